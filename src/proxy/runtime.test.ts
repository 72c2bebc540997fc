import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../util/exec.ts';
import { freePort } from '../util/net.ts';
import { HaproxyRuntime, parseServersState } from './runtime.ts';

let dir: string;
/** A haproxy.cfg with the runtime API on `sock`, a frontend on a free port and backend `app` of `servers`; `state`: a server state file loaded at start. */
async function configText(o: { sock: string; servers: string[]; state?: string }): Promise<string> {
  return [
    'global',
    `    stats socket ${o.sock} mode 600 level admin`,
    ...(o.state ? [`    server-state-file ${o.state}`] : []),
    'defaults',
    '    mode http',
    ...(o.state ? ['    load-server-state-from-file global'] : []),
    '    timeout connect 1s',
    '    timeout client 5s',
    '    timeout server 5s',
    'frontend f',
    `    bind 127.0.0.1:${await freePort()}`,
    '    default_backend app',
    'backend app',
    ...o.servers.map((l) => `    ${l}`),
    '',
  ].join('\n');
}

let haproxy: ChildProcess;
let rt: HaproxyRuntime;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-rt-'));
  const sock = join(dir, 'haproxy.sock');
  const [a, b] = [await freePort(), await freePort()];
  await writeFile(join(dir, 'haproxy.cfg'), await configText({ sock, servers: [`server app1 127.0.0.1:${a}`, `server app2 127.0.0.1:${b} check inter 5s`] }));
  haproxy = spawn('haproxy', ['-W', '-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  rt = new HaproxyRuntime(sock);
  await waitFor('the runtime API', async () => ((await rt.servers('app')).length === 2 ? true : undefined), 10_000, 100);
});

after(async () => {
  if (haproxy.pid) process.kill(haproxy.pid, 'SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

test('reads every server of a backend', async () => {
  const s = await rt.servers('app');
  assert.deepEqual(
    s.map((x) => [x.server, x.admin]),
    [
      ['app1', 'ready'],
      ['app2', 'ready'],
    ],
  );
});

test('maint fences a server and ready brings it back', async () => {
  await rt.maint('app', 'app1');
  assert.equal((await rt.servers('app')).find((x) => x.server === 'app1')?.admin, 'maint');
  await rt.ready('app', 'app1');
  assert.equal((await rt.servers('app')).find((x) => x.server === 'app1')?.admin, 'ready');
});

test('a server leaving MAINT is UP at once with ready, and down until its next check passes with readyWhenChecked', async () => {
  const op = async () => (await rt.servers('app')).find((x) => x.server === 'app2')?.op;
  // app2's check runs every 5 s against a port nothing listens on: its next check is seconds away.
  await rt.maint('app', 'app2');
  await rt.ready('app', 'app2');
  assert.equal(await op(), 'up', 'plain ready: HAProxy takes it as up before any check');
  await rt.maint('app', 'app2');
  await rt.readyWhenChecked('app', 'app2');
  const s = (await rt.servers('app')).find((x) => x.server === 'app2');
  assert.equal(s?.admin, 'ready');
  assert.equal(s?.op, 'down', 'down until a check passes');
});

test("disable health pauses a server's checks, enable health resumes them; a server without checks has none", async () => {
  const checks = async () => Object.fromEntries((await rt.servers('app')).map((x) => [x.server, x.checks]));
  assert.deepEqual(await checks(), { app1: 'none', app2: 'enabled' });
  await rt.disableHealth('app', 'app2');
  assert.deepEqual(await checks(), { app1: 'none', app2: 'disabled' });
  await rt.enableHealth('app', 'app2');
  assert.deepEqual(await checks(), { app1: 'none', app2: 'enabled' });
});

test('an unknown server is an error naming it', async () => {
  await assert.rejects(rt.maint('app', 'nosuch'), /nosuch/);
});

test('a command cannot smuggle a second command', async () => {
  await assert.rejects(rt.command('show info; shutdown frontend f'), /refusing/);
});

test('a socket that is not there is a retryable error', async () => {
  const missing = new HaproxyRuntime(join(dir, 'absent.sock'));
  await assert.rejects(missing.servers('app'), (e: Error & { retryable?: boolean }) => e.retryable === true);
});

test('parses admin state bits', () => {
  const text =
    '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_check_state\n3 app 1 a 1.2.3.4 2 0 6\n3 app 2 b 1.2.3.5 0 1 2\n3 app 3 c 1.2.3.6 2 8 0\n';
  assert.deepEqual(
    parseServersState(text).map((s) => `${s.server}:${s.op}:${s.admin}:${s.checks}`),
    ['a:up:ready:enabled', 'b:down:maint:disabled', 'c:up:drain:none'],
  );
});

test('a server the configuration starts disabled (0x04) is not in MAINT once readied; 0x20 and 0x10 are MAINT and DRAIN', () => {
  const text =
    '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_check_state\n3 app 1 a 1.2.3.4 2 4 6\n3 app 2 b 1.2.3.5 0 5 6\n3 app 3 c 1.2.3.6 0 32 6\n3 app 4 d 1.2.3.7 2 16 6\n';
  assert.deepEqual(
    parseServersState(text).map((s) => `${s.server}:${s.admin}`),
    ['a:ready', 'b:maint', 'c:maint', 'd:drain'],
  );
});

test('servers the configuration starts `disabled`: MAINT on a cold start, and a new process started from the saved state keeps the one readied', async (t) => {
  const d = await mkdtemp(join(tmpdir(), 'vigil-rt-disabled-'));
  const sock = join(d, 'haproxy.sock');
  const state = join(d, 'haproxy.state');
  const [a, b] = [await freePort(), await freePort()];
  await writeFile(
    join(d, 'haproxy.cfg'),
    await configText({ sock, state, servers: [`server d1 127.0.0.1:${a} disabled`, `server d2 127.0.0.1:${b} disabled`] }),
  );
  const running: ChildProcess[] = [];
  t.after(async () => {
    for (const p of running) if (p.exitCode === null) p.kill('SIGKILL');
    await rm(d, { recursive: true, force: true });
  });
  const local = new HaproxyRuntime(sock);
  const admin = async () => Object.fromEntries((await local.servers('app')).map((x) => [x.server, x.admin]));
  /** A HAProxy started from the state file as it is (what the generated unit's reload leads to). */
  const start = async () => {
    const p = spawn('haproxy', ['-db', '-f', join(d, 'haproxy.cfg')], { stdio: 'ignore' });
    running.push(p);
    await waitFor('the runtime API', async () => ((await local.servers('app').catch(() => [])).length === 2 ? true : undefined), 10_000, 100);
    return p;
  };
  const stop = (p: ChildProcess) => new Promise<void>((resolve) => (p.exitCode !== null ? resolve() : (p.once('exit', () => resolve()), p.kill('SIGTERM'))));

  await writeFile(state, '1\n');
  const first = await start();
  assert.deepEqual(await admin(), { d1: 'maint', d2: 'maint' }, 'a cold start: every server in MAINT');
  await local.ready('app', 'd1');
  assert.deepEqual(await admin(), { d1: 'ready', d2: 'maint' });
  await writeFile(state, await local.command('show servers state'));
  await stop(first);
  await start();
  assert.deepEqual(await admin(), { d1: 'ready', d2: 'maint' }, 'started again from the saved state');
});
