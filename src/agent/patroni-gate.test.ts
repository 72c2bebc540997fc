/**
 * The Patroni gate against the real kernel: a network namespace of this test's own, TCP listeners
 * in it standing for etcd and for Patroni's REST API, and connections made as the postgres user
 * (Patroni's) and as root (the agent's).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { run, sleep } from '../util/exec.ts';
import { PatroniGate, gateScript, nftDuration } from './patroni-gate.ts';

const NS = `vigil-gatetest-${process.pid}`;
const ETCD = 2379;
const REST = 8008;
let server: ChildProcess | undefined;

const inNs = (argv: string[], input?: string) => run('ip', ['netns', 'exec', NS, ...argv], { input, timeoutMs: 30_000, allowFail: true });
const nft = async (script: string) => {
  const r = await inNs(['nft', '-f', '-'], script);
  if (r.code !== 0) throw new Error(`nft: ${r.stderr}`);
};
const connect = (port: number) =>
  `const s=require('net').connect(${port},'127.0.0.1');s.on('connect',()=>{console.log('open');s.destroy()});s.on('error',(e)=>console.log(e.code))`;
const connectAs = async (user: 'postgres' | 'root', port = ETCD) =>
  (
    await inNs([...(user === 'postgres' ? ['setpriv', '--reuid=postgres', '--regid=postgres', '--clear-groups'] : []), process.execPath, '-e', connect(port)])
  ).stdout.trim();
const options = (leaseMs: number) => ({ user: 'postgres', etcdPort: ETCD, restPort: REST, leaseMs, nft });

before(async () => {
  await run('ip', ['netns', 'add', NS]);
  await inNs(['ip', 'link', 'set', 'lo', 'up']);
  const listen = `const net=require('net');let n=0;for(const p of [${ETCD},${REST}])net.createServer((s)=>s.end()).listen(p,'127.0.0.1',()=>{if(++n===2)console.log('listening')})`;
  server = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', listen], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server!.stdout!.once('data', () => resolve());
    server!.once('exit', (code) => reject(new Error(`listeners exited with ${code}`)));
  });
});

after(async () => {
  server?.kill('SIGKILL');
  await run('ip', ['netns', 'del', NS], { allowFail: true });
});

test('nftDuration and the script refuse what would not be a user or a port; the deadline is whole seconds, never later than the look plus the lease', () => {
  assert.equal(nftDuration(5500), '5s500ms');
  assert.equal(nftDuration(6000), '6s');
  assert.equal(nftDuration(1), '1ms');
  assert.throws(() => gateScript({ ...options(1000), user: 'postgres"; drop' }, Date.now()), /invalid user name/);
  assert.throws(() => gateScript({ ...options(1000), etcdPort: 0 }, Date.now()), /invalid etcd port/);
  const script = gateScript(options(5500), 1_800_000_000_900);
  assert.match(script, /meta time > 1800000006 reject/);
  assert.match(script, /meta skuid "postgres" tcp dport 2379 tcp dport != @lease reject with tcp reset/);
  assert.match(script, /^ {4}tcp dport 8008 tcp dport != @lease reject with tcp reset$/m);
});

test("the gate holds Patroni's user to etcd and everyone to Patroni's REST port only while its lease is renewed; root to etcd and a removed gate pass", async () => {
  assert.equal(await connectAs('postgres'), 'open', 'no gate yet');
  const gate = new PatroniGate(options(600_000));
  const short = new PatroniGate(options(1));

  await gate.renew();
  assert.equal(await connectAs('postgres'), 'open', 'within the lease');
  assert.equal(await connectAs('root', REST), 'open', "Patroni's REST API within the lease");

  await short.renew(); // the same table, with a lease that has run out by the time we connect
  await sleep(100);
  assert.equal(await connectAs('postgres'), 'ECONNREFUSED', 'the lease ran out in the kernel: refused at once');
  assert.equal(await connectAs('root'), 'open', 'the agent (root) still reaches etcd');
  assert.equal(await connectAs('root', REST), 'ECONNREFUSED', "nobody reaches Patroni's REST API (HAProxy's check, a replica's probe)");

  await gate.renew();
  assert.equal(await connectAs('postgres'), 'open', 'renewed');

  // A renewal decided long ago (its nft held up by a stall of the machine) opens nothing: the
  // wall-clock deadline written into the rules has passed, whatever the element's timeout says.
  await gate.renew(Date.now() - 700_000);
  assert.equal(await connectAs('postgres'), 'ECONNREFUSED', 'a late renewal opens nothing');
  assert.equal(await connectAs('root', REST), 'ECONNREFUSED');

  await gate.remove();
  assert.equal(await connectAs('postgres'), 'open', 'removed');
  assert.equal(await connectAs('root', REST), 'open');
  await gate.remove(); // removing twice is fine
});
