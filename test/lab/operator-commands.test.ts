/**
 * The operator's commands against a `pair` lab: status, maintenance (the observer holds still),
 * a planned switchover of both tiers with no lost write, a manual failover, the event history, and
 * the e-mail alerts the observer sends to an SMTP server on the lab's bridge address, and the
 * Prometheus metrics of every daemon before and after a failover.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';
import { withRole } from '../../src/config/schema.ts';
import { findPrimary, labDown, labSignal, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { HttpProbe } from '../../src/lab/probe.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { BRIDGE_ADDRESS } from '../../src/lab/topology.ts';
import { AckWriter } from '../../src/lab/writer.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';
import { freePort } from '../../src/util/net.ts';
import { printJournals } from './journal.ts';
import { parseExposition, promtoolCheckMetrics, sampleValue, type Sample } from '../../src/testing/metrics.ts';

const vigil = async (...args: string[]) => (await promisify(execFile)(process.execPath, ['bin/vigil.js', ...args, '--lab'], { timeout: 120_000 })).stdout;

interface Status {
  active: { node: string; epoch: number } | null;
  maintenance: unknown;
  observerLeader: { host: string } | null;
  machines: { name: string; agent: { active: boolean; ready: boolean } | null }[];
}
const status = async () => JSON.parse(await vigil('status', '--json')) as Status;

let lab: LabHandle;
let probe: HttpProbe;
const mails: { subject: string; text: string }[] = [];
let smtp: SMTPServer;

before(async () => {
  await labDown();
  const port = await freePort();
  lab = await labUp(
    {
      topology: 'pair',
      alerts: { email: { to: 'ops@lab.test', from: 'vigil@lab.test', smtp: { host: BRIDGE_ADDRESS, port, starttls: 'off' } }, rateLimitSeconds: 0 },
    },
    (l) => console.log(`# lab: ${l}`),
  );
  // The sink listens on the bridge address, which exists only once the lab is up.
  smtp = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, _s, cb) {
      simpleParser(stream).then((m) => {
        mails.push({ subject: m.subject ?? '', text: m.text ?? '' });
        cb();
      }, cb);
    },
  });
  await new Promise<void>((resolve) => smtp.listen(port, BRIDGE_ADDRESS, resolve));
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}/health`);
  probe.start();
});

after(async () => {
  await probe?.stop();
  await new Promise<void>((r) => (smtp ? smtp.close(() => r()) : r()));
  await labDown();
});

test('status shows one active machine, the ready standby and the observer leader', async () => {
  await labSettled(lab);
  const s = await status();
  assert.ok(s.active, 'an active node');
  assert.equal(s.observerLeader?.host, 'observer');
  const apps = s.machines.filter((m) => m.name.startsWith('app'));
  assert.deepEqual(
    apps.filter((m) => m.agent?.active).map((m) => m.name),
    [s.active.node],
  );
  assert.ok(apps.every((m) => m.agent?.active || m.agent?.ready));
  const text = await vigil('status');
  assert.match(text, new RegExp(`active app node: ${s.active.node} at epoch ${s.active.epoch}`));
});

interface MetricsTarget {
  machine: string;
  daemon: 'agent' | 'observer' | 'haproxy' | 'patroni';
  url: string;
}
let targets: MetricsTarget[] = [];
/** Every Vigil daemon's samples, by `machine/daemon`, as scraped before the failover below. */
let baseline: Map<string, Sample[]> | undefined;

const scrape = async (url: string): Promise<string> => {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200, url);
  return r.text();
};
const scrapeVigil = async (): Promise<Map<string, Sample[]>> =>
  new Map(
    await Promise.all(
      targets
        .filter((t) => t.daemon === 'agent' || t.daemon === 'observer')
        .map(async (t) => [`${t.machine}/${t.daemon}`, parseExposition(await scrape(t.url))] as const),
    ),
  );

test('every daemon serves /metrics: lab status --json lists the URLs, promtool checks them; HAProxy and Patroni export theirs', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/vigil.js', 'lab', 'status', '--json'], { timeout: 60_000 });
  targets = (JSON.parse(stdout) as { metrics: MetricsTarget[] }).metrics;
  // pair: the observer machine runs the observer and HAProxy (no agent); app1 and app2 an agent and Patroni.
  assert.deepEqual(targets.map((t) => `${t.machine}/${t.daemon}`).sort(), [
    'app1/agent',
    'app1/patroni',
    'app2/agent',
    'app2/patroni',
    'observer/haproxy',
    'observer/observer',
  ]);
  for (const t of targets) {
    const text = await scrape(t.url);
    if (t.daemon === 'haproxy') assert.match(text, /^haproxy_server_status\{proxy="app",server="app1",state="MAINT"\} [01]$/m, t.url);
    else if (t.daemon === 'patroni') assert.match(text, /^patroni_postgres_running\{[^}]*\} 1$/m, t.url);
    else assert.deepEqual(await promtoolCheckMetrics(text), [], `promtool check metrics on ${t.url}`);
  }
  baseline = await scrapeVigil();
  assert.equal(sampleValue(baseline.get('observer/observer')!, 'vigil_observer_is_leader'), 1);
});

test('in maintenance the observer takes no action; off again, it fails over', async () => {
  const before = (await status()).active!;
  await vigil('maintenance', 'on', '--reason', 'upgrade');
  assert.ok((await status()).maintenance);
  await labSignal(before.node, 'app', 'SIGKILL');
  await sleep(6000); // three times the failover delay
  assert.deepEqual((await status()).active, before, 'no failover during maintenance');
  await vigil('maintenance', 'off');
  await waitFor(
    'a failover after maintenance',
    async () => {
      const a = (await status()).active;
      return a && a.node !== before.node ? a : undefined;
    },
    30_000,
    500,
  );
  await waitFor(
    'mail about maintenance and the failover',
    async () => {
      const subjects = mails.map((m) => m.subject).join('\n');
      return /maintenance-on/.test(subjects) && /maintenance-off/.test(subjects) && /failover/.test(subjects) ? true : undefined;
    },
    30_000,
    500,
  );
  await metricsMoved(before, (await status()).active!);
});

/** After the failover: the observer counted and timed it, its epoch and every agent's went up, the new node's agent says active. */
async function metricsMoved(old: { node: string; epoch: number }, now: { node: string; epoch: number }): Promise<void> {
  assert.ok(baseline, 'the metrics test ran first');
  const o0 = baseline.get('observer/observer')!;
  const counted = { kind: 'failover', result: 'success' };
  const started = performance.now();
  const after = await waitFor(
    'vigil_failovers_total{kind="failover",result="success"} to count the failover',
    async () => {
      const m = await scrapeVigil();
      return sampleValue(m.get('observer/observer')!, 'vigil_failovers_total', counted)! > sampleValue(o0, 'vigil_failovers_total', counted)! ? m : undefined;
    },
    20_000,
    500,
  ).catch(async (err: Error) => {
    const o = (await scrapeVigil()).get('observer/observer')!;
    return assert.fail(
      `${err.message}: ${o
        .filter((x) => x.name === 'vigil_failovers_total')
        .map((x) => `${JSON.stringify(x.labels)} ${x.value}`)
        .join('; ')}`,
    );
  });
  console.log(`# metrics: the failover counted ${Math.round(performance.now() - started)} ms after the test looked`);
  const o1 = after.get('observer/observer')!;
  const moved = (name: string, labels: Record<string, string>) => (sampleValue(o1, name, labels) ?? 0) - (sampleValue(o0, name, labels) ?? 0);
  assert.equal(moved('vigil_failover_duration_seconds_count', { kind: 'failover' }), 1, 'one failover in the duration histogram');
  assert.ok(moved('vigil_failover_duration_seconds_sum', { kind: 'failover' }) > 0);
  for (const phase of ['detect', 'fence', 'app_start', 'proxy_switch'])
    assert.equal(moved('vigil_failover_phase_duration_seconds_count', { kind: 'failover', phase }), 1, `phase ${phase} observed`);
  assert.ok(sampleValue(o1, 'vigil_cluster_epoch')! > sampleValue(o0, 'vigil_cluster_epoch')!, 'the epoch gauge went up');
  assert.equal(sampleValue(o1, 'vigil_cluster_epoch'), now.epoch);
  assert.equal(sampleValue(o1, 'vigil_node_role', { node: now.node, state: 'active' }), 1);
  assert.ok(sampleValue(o1, 'vigil_last_failover_timestamp_seconds', { kind: 'failover' })! > 0);
  const agent = after.get(`${now.node}/agent`)!;
  assert.equal(sampleValue(agent, 'vigil_agent_role', { state: 'active' }), 1, `${now.node}'s agent says active`);
  assert.equal(sampleValue(agent, 'vigil_agent_epoch'), now.epoch);
  assert.equal(sampleValue(after.get(`${old.node}/agent`)!, 'vigil_agent_role', { state: 'active' }), 0, `${old.node}'s agent no longer active`);
}

/** One `vigil switchover`: the app moves, and the database primary ends on the app's new machine. */
async function switchover(): Promise<{ from: string; to: string; primaryBefore: string | undefined; startedMs: number }> {
  await labSettled(lab);
  const from = (await status()).active!.node;
  const primaryBefore = (await findPrimary(lab.cluster))?.name;
  const startedMs = Date.now();
  const out = await vigil('switchover');
  assert.match(out, /done: app[12] is active at epoch/);
  const to = (await status()).active!.node;
  assert.notEqual(to, from);
  assert.equal((await findPrimary(lab.cluster))?.name, to, 'the database primary moved with the application');
  return { from, to, primaryBefore, startedMs };
}

test('a switchover moves both tiers with no lost write; the stopped primary is released at once', async () => {
  await labSettled(lab);
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  const writer = new AckWriter({
    host: proxy.address,
    port: lab.cluster.proxy.postgresPort,
    user: lab.cluster.database.appUser,
    password: lab.secrets.appDbPassword,
    database: lab.cluster.database.appDatabase,
    intervalMs: 20,
  });
  await writer.prepare();
  writer.start();
  try {
    await waitFor('writes', async () => (writer.acked.length > 20 ? true : undefined), 20_000);
    // After the manual failover of an earlier test the primary may sit on the standby: the first
    // switchover then moves only the app (onto the primary), and a second one moves both.
    let sw = await switchover();
    if (sw.primaryBefore === sw.to) {
      console.log(`# the database primary was already on ${sw.to}: a second switchover moves it`);
      sw = await switchover();
    }
    assert.equal(sw.primaryBefore, sw.from, 'this switchover moved the database primary');
    // The old primary's leader key is released by the observer as soon as its postmaster has
    // exited, not by Patroni's stop loop a second later (db-release.ts, stoppedPrimary).
    const released = (await vigil('events', '-n', '30', '--json'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { at: string; type: string; message: string })
      .filter((e) => e.type === 'db-leader-released' && Date.parse(e.at) >= sw.startedMs - 1000);
    if (!released.some((e) => /answers as primary \(stopping\) and its PostgreSQL port refuses connections/.test(e.message))) {
      const units: [string, string][] = [
        ['observer', 'vigil-observer.service'],
        [sw.from, 'vigil-patroni.service'],
        [sw.to, 'vigil-patroni.service'],
      ];
      await printJournals(units, sw.startedMs - 1000, Date.now());
      assert.fail(`no db-leader-released event for the stopped primary ${sw.from}: ${JSON.stringify(released)}`);
    }
    const count = writer.acked.length;
    await waitFor('writes after the switchover', async () => (writer.acked.length > count + 20 ? true : undefined), 30_000);
  } finally {
    await writer.stop();
  }
  assert.deepEqual(await writer.missing(), []);
});

test('a manual failover makes the named machine active; a bad name is refused', async () => {
  await labSettled(lab);
  const before = (await status()).active!;
  const to = before.node === 'app1' ? 'app2' : 'app1';
  assert.match(await vigil('failover', '--to', to), new RegExp(`done: ${to} is active`));
  await assert.rejects(vigil('failover', '--to', 'db9'), /not an app machine/);
});

test('events tell the story, oldest first', async () => {
  const out = await vigil('events', '-n', '100');
  for (const type of ['bootstrap', 'maintenance-on', 'maintenance-off', 'failover', 'switchover', 'fence'])
    assert.match(out, new RegExp(`\\s${type}\\s`), type);
});
