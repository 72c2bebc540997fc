/**
 * The etcd gate against the real kernel: a network namespace of this test's own, a TCP listener
 * in it standing for etcd, and connections made as the postgres user (Patroni's) and as root.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { run, sleep } from '../util/exec.ts';
import { EtcdGate, gateScript, nftDuration } from './etcd-gate.ts';

const NS = `vigil-gatetest-${process.pid}`;
const PORT = 2379;
let server: ChildProcess | undefined;

const inNs = (argv: string[], input?: string) => run('ip', ['netns', 'exec', NS, ...argv], { input, timeoutMs: 30_000, allowFail: true });
const nft = async (script: string) => {
  const r = await inNs(['nft', '-f', '-'], script);
  if (r.code !== 0) throw new Error(`nft: ${r.stderr}`);
};
const CONNECT = `const s=require('net').connect(${PORT},'127.0.0.1');s.on('connect',()=>{console.log('open');s.destroy()});s.on('error',(e)=>console.log(e.code))`;
const connectAs = async (user: 'postgres' | 'root') =>
  (await inNs([...(user === 'postgres' ? ['setpriv', '--reuid=postgres', '--regid=postgres', '--clear-groups'] : []), process.execPath, '-e', CONNECT])).stdout.trim();

before(async () => {
  await run('ip', ['netns', 'add', NS]);
  await inNs(['ip', 'link', 'set', 'lo', 'up']);
  server = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', `require('net').createServer((s)=>s.end()).listen(${PORT},'127.0.0.1',()=>console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server!.stdout!.once('data', () => resolve());
    server!.once('exit', (code) => reject(new Error(`listener exited with ${code}`)));
  });
});

after(async () => {
  server?.kill('SIGKILL');
  await run('ip', ['netns', 'del', NS], { allowFail: true });
});

test('nftDuration and the script refuse what would not be a user or a port', () => {
  assert.equal(nftDuration(5500), '5s500ms');
  assert.equal(nftDuration(6000), '6s');
  assert.equal(nftDuration(1), '1ms');
  assert.throws(() => gateScript({ user: 'postgres"; drop', port: PORT, leaseMs: 1000 }), /invalid user name/);
  assert.throws(() => gateScript({ user: 'postgres', port: 0, leaseMs: 1000 }), /invalid port/);
});

test("the gate holds Patroni's user to etcd's port only while its lease is renewed; root and a removed gate pass", async () => {
  assert.equal(await connectAs('postgres'), 'open', 'no gate yet');
  const short = new EtcdGate({ user: 'postgres', port: PORT, leaseMs: 1, nft });
  const long = new EtcdGate({ user: 'postgres', port: PORT, leaseMs: 600_000, nft });

  await long.install();
  assert.equal(await connectAs('postgres'), 'open', 'within the lease');

  await short.install(); // the same table, with a lease that has run out by the time we connect
  await sleep(100);
  assert.equal(await connectAs('postgres'), 'ECONNREFUSED', 'the lease ran out in the kernel: refused at once');
  assert.equal(await connectAs('root'), 'open', 'the agent (root) still reaches etcd');

  await long.renew();
  assert.equal(await connectAs('postgres'), 'open', 'renewed');

  await short.renew();
  await sleep(100);
  assert.equal(await connectAs('postgres'), 'ECONNREFUSED');
  await long.remove();
  assert.equal(await connectAs('postgres'), 'open', 'removed');
  await long.remove(); // removing twice is fine
});
