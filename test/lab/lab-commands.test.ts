/**
 * The lab itself on `pair`: what runs where, the reference application through the proxy, and
 * every fault command, ending with `lab down` cleaning up after a simulated crash.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { connect } from 'node:net';
import { existsSync } from 'node:fs';
import { withRole } from '../../src/config/schema.ts';
import { labCut, labDown, labHeal, labKill, labLatency, labRevive, labSignal, labStatus, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { latencyLogFile, latencyPidFile, listLabNetns } from '../../src/lab/net.ts';
import { BRIDGE, LAB_DIR, hostPathOf, netnsName, statePath } from '../../src/lab/paths.ts';
import { listProcesses } from '../../src/lab/procs.ts';
import { run, waitFor } from '../../src/util/exec.ts';

const vigil = (...args: string[]) => promisify(execFile)(process.execPath, ['bin/vigil.js', ...args], { timeout: 30_000 });

let lab: LabHandle;
let base: string;

before(async () => {
  await labDown();
  lab = await labUp({ topology: 'pair' }, (l) => console.log(`# lab: ${l}`));
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  base = `http://${proxy.address}:${lab.cluster.proxy.httpPort}`;
});
after(async () => labDown());

test('status says what the machines run and names the processes on each machine', async () => {
  const text = (await vigil('lab', 'status')).stdout;
  assert.match(
    text.split('\n')[0]!,
    /^machines: Debian 13 \(trixie\), booted with systemd; PostgreSQL 17\.\d+, Patroni 4\.\d+\.\d+, etcd 3\.5\.\d+, HAProxy 3\.0\.\d+$/,
  );
  const { stdout } = await vigil('lab', 'status', '--json');
  const status = JSON.parse(stdout) as { release: string; packages: { postgresql?: string }; machines: { name: string; processes: Record<string, number> }[] };
  assert.equal(status.release, 'trixie');
  assert.match(status.packages.postgresql ?? '', /^17\./);
  const machines = status.machines;
  const on = (n: string) => Object.keys(machines.find((m) => m.name === n)!.processes);
  for (const p of ['etcd', 'haproxy', 'observer']) assert.ok(on('observer').includes(p), `observer runs ${p}`);
  for (const host of ['app1', 'app2']) for (const p of ['patroni', 'postgres', 'agent']) assert.ok(on(host).includes(p), `${host} runs ${p}`);
  // nginx and the app run only on the active machine: the agents start them there alone.
  const serving = ['app1', 'app2'].filter((h) => on(h).includes('nginx') && on(h).includes('app'));
  assert.equal(serving.length, 1, `exactly one app machine runs nginx and the app (${serving.join(', ')})`);
});

test('a ticket and its attachment go through the proxy and come back', async () => {
  const res = await fetch(`${base}/api/tickets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'VPN down' }),
  });
  assert.equal(res.status, 201);
  const { id, node } = (await res.json()) as { id: string; node: string };
  assert.match(node, /^app[12]$/);
  const data = Buffer.from('screenshot bytes '.repeat(1000));
  const put = await fetch(`${base}/api/tickets/${id}/attachments/screen.png`, { method: 'PUT', body: data });
  assert.ok(put.status === 201 || put.status === 200, `attachment stored (${put.status})`);
  const got = Buffer.from(await (await fetch(`${base}/api/tickets/${id}/attachments/screen.png`)).arrayBuffer());
  assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(data).digest('hex'));
  const ticket = (await (await fetch(`${base}/api/tickets/${id}`)).json()) as { title: string };
  assert.equal(ticket.title, 'VPN down');
});

test('every machine boots systemd, and the components run as the units apply installed', async () => {
  for (const m of lab.cluster.machines) {
    const { stdout } = await vigil(
      'lab',
      'exec',
      m.name,
      '--',
      'sh',
      '-c',
      'cat /proc/1/comm; systemctl is-system-running; systemctl is-active vigil-agent.service vigil-etcd.service vigil-patroni.service vigil-haproxy.service vigil-observer.service || true',
    );
    const [comm, system, ...units] = stdout.trim().split('\n');
    assert.equal(comm, 'systemd', `${m.name}: PID 1`);
    assert.equal(system, 'running', `${m.name}: systemctl is-system-running`);
    const expect = [
      m.roles.includes('app') || m.roles.includes('db'),
      m.roles.includes('etcd'),
      m.roles.includes('db'),
      m.roles.includes('proxy'),
      m.roles.includes('observer'),
    ];
    assert.deepEqual(
      units.map((u) => u === 'active'),
      expect,
      `${m.name}: agent, etcd, patroni, haproxy, observer units`,
    );
  }
});

test('the proxy terminates TLS on :443 with a certificate from the cluster CA', async () => {
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  const ca = await readFile(join(LAB_DIR, 'pki', 'ca.pem'), 'utf8');
  assert.ok((await stat(hostPathOf(proxy.name, lab.cluster.proxy.tlsBundle!))).isFile(), 'apply installed the bundle');
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest({ host: proxy.address, port: lab.cluster.proxy.httpsPort, path: '/health', ca, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(answer.status, 200);
  assert.match(answer.body, /"status":"ok"/);
});

test('exec runs a command inside a machine', async () => {
  const app1 = lab.cluster.machines.find((m) => m.name === 'app1')!;
  const { stdout } = await vigil('lab', 'exec', 'app1', '--', 'ip', '-4', '-o', 'addr', 'show', 'eth0');
  assert.match(stdout, new RegExp(`inet ${app1.address.replaceAll('.', '\\.')}/`));
});

const reach = (from: string, to: string, port: number) =>
  run('ip', ['netns', 'exec', netnsName(from), 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${to}/${port}`], { allowFail: true }).then((r) => r.code === 0);

test('cut isolates a machine from chosen peers until heal', async () => {
  const observer = lab.cluster.machines.find((m) => m.name === 'observer')!;
  const app1 = lab.cluster.machines.find((m) => m.name === 'app1')!;
  assert.ok(await reach('app1', observer.address, 2379));
  await labCut('app1', ['observer'], false);
  assert.equal(await reach('app1', observer.address, 2379), false, 'app1 cannot reach the observer');
  assert.equal(await reach('observer', app1.address, 8008), false, 'the observer cannot reach app1');
  assert.ok(await reach('app2', app1.address, 8008), 'app2 still reaches app1');
  await labHeal();
  assert.ok(await reach('app1', observer.address, 2379), 'healed');
});

/** One TCP connect from this host to `to`:`port`, in ms (SYN out, SYN-ACK back: one round trip). */
const connectMs = (to: string, port: number) =>
  new Promise<number>((resolve, reject) => {
    const t = performance.now();
    const s = connect(port, to, () => {
      s.destroy();
      resolve(performance.now() - t);
    });
    s.setTimeout(10_000, () => s.destroy(new Error(`connect to ${to}:${port} timed out`)));
    s.on('error', reject);
  });

test('latency holds every packet of a machine, both ways, until heal', async () => {
  // A lower bound only: load can make a round trip slower, never faster than the held packets.
  const app1 = lab.cluster.machines.find((m) => m.name === 'app1')!;
  const ms = 150;
  await labLatency('app1', ms);
  const pid = Number((await readFile(latencyPidFile('app1'), 'utf8')).trim());
  try {
    const rtts = [await connectMs(app1.address, 22), await connectMs(app1.address, 22), await connectMs(app1.address, 22)];
    for (const r of rtts) assert.ok(r >= 2 * ms, `a round trip to app1 took ${r.toFixed(0)} ms with ${ms} ms each way`);
    // sshd, not Patroni's REST port: what is tested is the network path. At 6cfa72d (etcd over TLS) app1's
    // Patroni took more than 2 s to accept on :8008 here, twice, with its etcd connections behind the held
    // packets; not reproduced by hand, cause not established (the session note of 2026-12-07 says so).
    assert.ok(await reach('app2', app1.address, 22), 'app2 still reaches app1: delayed, not dropped');
  } finally {
    await labHeal();
  }
  // The program that held the packets is gone, its rules too, and it says what it did.
  assert.equal(existsSync(latencyPidFile('app1')), false, 'its pid file removed');
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  assert.doesNotMatch(cmdline, /nfq-delay/, `nfq-delay.py (pid ${pid}) exited`);
  const log = await readFile(latencyLogFile('app1'), 'utf8');
  const delayed = Number(/delayed (\d+) packets by 150 ms/.exec(log)?.[1]);
  assert.ok(delayed > 0, `nfq-delay.py delayed packets: ${log}`);
  const rules = await run('ip', ['netns', 'exec', netnsName('app1'), 'iptables-legacy', '-w', '-S']);
  assert.doesNotMatch(rules.stdout, /VIGIL_LAB_LATENCY|NFQUEUE/);
});

const states = async (host: string, name: string) =>
  Promise.all((await listProcesses(host)).filter((p) => p.name === name).map(async (p) => (await readFile(`/proc/${p.pid}/stat`, 'utf8')).split(') ')[1]![0]));

test('stop pauses a process and cont resumes it', async () => {
  // HAProxy on the observer machine, paused for a moment: nothing else in this file depends on it meanwhile.
  // A signal is delivered when the kernel next schedules the process: on a loaded machine the
  // state can lag the kill() call, so each state is waited for (within 5 s), not read once.
  const all = (want: (s: string | undefined) => boolean) => async () => ((await states('observer', 'haproxy')).every(want) ? true : undefined);
  await labSignal('observer', 'haproxy', 'SIGSTOP');
  try {
    await waitFor(
      'every haproxy process stopped (T)',
      all((s) => s === 'T'),
      5_000,
      50,
    );
  } finally {
    await labSignal('observer', 'haproxy', 'SIGCONT');
  }
  await waitFor(
    'every haproxy process running again',
    all((s) => s !== 'T'),
    5_000,
    50,
  );
});

test('kill empties a machine and revive brings it back', async () => {
  await labKill('app2');
  const dead = (await labStatus()).find((m) => m.name === 'app2')!;
  assert.deepEqual(dead.pids, []);
  await labRevive('app2');
  await waitFor(
    'app2 processes back',
    async () => {
      const m = (await labStatus()).find((x) => x.name === 'app2')!;
      return ['patroni', 'postgres', 'agent'].every((p) => (m.processes as Record<string, number>)[p]) ? true : undefined;
    },
    60_000,
    500,
  );
});

test('down removes everything, even when the lab state was lost in a crash', async () => {
  await rm(statePath()); // a crashed `lab up` may never have written it
  await labDown();
  assert.deepEqual(await listLabNetns(), []);
  assert.equal((await run('ip', ['link', 'show', BRIDGE], { allowFail: true })).code !== 0, true, 'bridge removed');
  await assert.rejects(stat(LAB_DIR));
});
