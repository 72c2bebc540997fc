/**
 * The alert rules (monitoring/vigil-alerts.yml) in Debian's real `prometheus`, scraping a lab:
 * the split-brain rule stays silent and the failover rule fires (issue 18 §2, docs/metrics.md).
 *
 * Writes a Prometheus config into a temporary directory (every URL `vigil lab status --json`
 * lists under `metrics`, scraped and evaluated every second, the rules file as `rule_files`),
 * checks it with `promtool check config`, and starts `prometheus` on 127.0.0.1 at a free port
 * with its storage in that directory, as a child process stopped by its own pid at the end. The
 * lab machines' addresses are routed from this host through the lab's bridge, so Prometheus
 * reaches them as any client of the lab does.
 *
 * Then, asking Prometheus's HTTP API every `--poll-ms`:
 *   1. every target up (/api/v1/targets);
 *   2. the baseline: an idle window of `--idle` seconds in which no alert may fire (/api/v1/alerts);
 *   3. the active app machine killed (as bench/app-failover.ts does) and the same poll until
 *      `VigilFailover` fires, within `--timeout` seconds;
 *   4. the killed machine revived, the cluster settled, and a tail of `--tail` seconds (longer
 *      than the split-brain rule's 15 s `for`).
 * `VigilSplitBrain` must not appear at any poll, pending or firing. Each poll also asks how many
 * agents report `vigil_agent_role{state="active"} == 1` (the rule's input), and the report gives
 * the most seen at once. The exit status is 1 when any expectation fails.
 *
 *   npx tsx bench/prometheus-lab.ts [--topology pair] [--existing] [--keep] [--idle 30] [--tail 20]
 *     [--timeout 120] [--poll-ms 500]
 *
 * `--witness-split-brain` shows the check can fail: a fake agent target on this host's loopback
 * (job `agent`, the lab's `cluster` label) reports `vigil_agent_role{state="active"} 1` beside the
 * lab's active agent, so the rule sees two, and the run must end with status 1. It stands for no
 * component's behaviour: it only feeds the rule the input a split brain would.
 *
 * Without `--existing` it brings a lab up (after `vigil lab down`) and takes it down at the end,
 * unless `--keep`. With `--existing` it uses the lab that is up and leaves it up. Each run starts
 * a Prometheus with empty storage, so a failover before the run does not fire `VigilFailover`
 * (`increase()` sees only the samples of this run).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { stringify } from 'yaml';
import { labAgents, labDown, labKill, labMetrics, labRevive, labUp, openLab, type LabHandle, type MetricsTarget } from '../src/lab/lab.ts';
import { labSettled, WAIT_ANSWER_MS } from '../src/lab/settle.ts';
import { LAB_DIR } from '../src/lab/paths.ts';
import type { LabTopology } from '../src/lab/topology.ts';
import { sleep, waitFor } from '../src/util/exec.ts';

const { values } = parseArgs({
  options: {
    topology: { type: 'string', default: 'pair' },
    existing: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    idle: { type: 'string', default: '30' },
    tail: { type: 'string', default: '20' },
    timeout: { type: 'string', default: '120' },
    'poll-ms': { type: 'string', default: '500' },
    'witness-split-brain': { type: 'boolean', default: false },
  },
});
const seconds = (flag: string, v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} ${v}: a number of seconds, 0 or more`);
  return n;
};
const idleS = seconds('idle', values.idle);
const tailS = seconds('tail', values.tail);
const timeoutS = seconds('timeout', values.timeout);
const pollMs = seconds('poll-ms', values['poll-ms']);
if (values.topology !== 'pair' && values.topology !== 'distributed') throw new Error(`--topology ${values.topology}: use pair or distributed`);
const topology = values.topology as LabTopology;

const RULES_FILE = resolve(import.meta.dirname, '../monitoring/vigil-alerts.yml');
const SPLIT_BRAIN = 'VigilSplitBrain';
const FAILOVER = 'VigilFailover';

/**
 * Prometheus's config: one job per kind of daemon, every target labelled `cluster` and `machine`.
 * A job on https (Patroni's REST API; the lab's own daemons keep `metrics.auth: none`) trusts the
 * lab's cluster CA.
 */
function prometheusConfig(targets: MetricsTarget[], rulesFile: string, cluster: string): string {
  const jobs = [...new Set(targets.map((t) => t.daemon))];
  return stringify({
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: [rulesFile],
    scrape_configs: jobs.map((daemon) => {
      const mine = targets.filter((t) => t.daemon === daemon).map((t) => ({ t, url: new URL(t.url) }));
      const scheme = mine[0]!.url.protocol.slice(0, -1);
      for (const { t, url } of mine)
        if (url.protocol !== `${scheme}:` || url.pathname !== '/metrics')
          throw new Error(`${t.machine} ${t.daemon}: ${t.url} is not ${scheme}://…/metrics like the job's other targets`);
      return {
        job_name: daemon,
        metrics_path: '/metrics',
        ...(scheme === 'https' ? { scheme, tls_config: { ca_file: join(LAB_DIR, 'pki', 'ca.pem') } } : {}),
        static_configs: mine.map(({ t, url }) => ({ targets: [url.host], labels: { cluster, machine: t.machine } })),
      };
    }),
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise((ok) => server.close(ok));
  return port;
}

/** The witness's fake agent: an HTTP server on loopback that says it is active (see the header). */
async function fakeActiveAgent(): Promise<{ server: Server; target: MetricsTarget }> {
  const server = createHttpServer((_req, res) => {
    res.setHeader('content-type', 'text/plain; version=0.0.4');
    res.end('# TYPE vigil_agent_role gauge\nvigil_agent_role{state="active"} 1\nvigil_agent_role{state="standby"} 0\n');
  });
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  console.log(`witness: a fake agent on 127.0.0.1:${port} reports itself active`);
  return { server, target: { machine: 'fake-agent', daemon: 'agent', url: `http://127.0.0.1:${port}/metrics` } };
}

interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt?: string;
}
interface Target {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
}

/** Debian's `prometheus`, a child of this process: stopped by its own pid (never by name). */
class LabPrometheus {
  private child?: ChildProcess;
  private readonly killOnExit = () => this.child?.kill('SIGKILL');
  readonly base: string;
  constructor(
    readonly dir: string,
    readonly port: number,
  ) {
    this.base = `http://127.0.0.1:${port}`;
  }

  get logFile(): string {
    return join(this.dir, 'prometheus.log');
  }

  async start(config: string): Promise<void> {
    const file = join(this.dir, 'prometheus.yml');
    await writeFile(file, config);
    await promisify(execFile)('promtool', ['check', 'config', file]).catch((err: { stdout?: string; stderr?: string }) => {
      throw new Error(`promtool check config ${file} refused the generated config:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
    });
    const log = openSync(this.logFile, 'a');
    this.child = spawn(
      'prometheus',
      [
        `--config.file=${file}`,
        `--storage.tsdb.path=${join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    process.once('exit', this.killOnExit); // should this script die before stop()
    const exited = new Promise<never>((_, fail) =>
      this.child!.once('exit', (code, signal) => fail(new Error(`prometheus exited (${code ?? signal}) while starting:\n${this.logTail()}`))),
    );
    exited.catch(() => {});
    await Promise.race([waitFor('prometheus to be ready', async () => ((await fetch(`${this.base}/-/ready`)).ok ? true : undefined), 60_000, 200), exited]);
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private async api<T>(path: string): Promise<T> {
    const res = await fetch(`${this.base}${path}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  }

  async targets(): Promise<Target[]> {
    return (await this.api<{ activeTargets: Target[] }>('/api/v1/targets?state=active')).activeTargets;
  }

  /** Pending and firing alerts. */
  async alerts(): Promise<Alert[]> {
    return (await this.api<{ alerts: Alert[] }>('/api/v1/alerts')).alerts;
  }

  /** An instant query's single value (0 for an empty result). */
  async scalar(query: string): Promise<number> {
    const data = await this.api<{ result: { value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(query)}`);
    return data.result.length ? Number(data.result[0]!.value[1]) : 0;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    const hard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(hard);
    process.off('exit', this.killOnExit);
  }
}

/** What the polls of one phase saw. */
interface Phase {
  name: string;
  polls: number;
  /** Alert name and state, with the first time (s from the phase's start) it was seen so. */
  seen: Map<string, number>;
  mostActive: number;
  splitBrainSeen: boolean;
}

const key = (a: Alert) => `${a.labels.alertname}${a.labels.kind ? `{kind=${a.labels.kind}}` : ''} ${a.state}`;

/** Polls the alerts (and the split-brain rule's input) until `until` returns true or `forS` seconds pass. */
async function pollPhase(prom: LabPrometheus, name: string, forS: number, until?: (alerts: Alert[]) => boolean): Promise<Phase & { endedBy: boolean }> {
  const phase: Phase = { name, polls: 0, seen: new Map(), mostActive: 0, splitBrainSeen: false };
  const t0 = performance.now();
  for (;;) {
    const [alerts, active] = await Promise.all([prom.alerts(), prom.scalar(`count(vigil_agent_role{state="active"} == 1)`)]);
    const at = (performance.now() - t0) / 1000;
    phase.polls++;
    phase.mostActive = Math.max(phase.mostActive, active);
    for (const a of alerts) {
      if (!phase.seen.has(key(a))) phase.seen.set(key(a), at);
      if (a.labels.alertname === SPLIT_BRAIN) phase.splitBrainSeen = true;
    }
    if (until?.(alerts)) return { ...phase, endedBy: true };
    if (at >= forS) return { ...phase, endedBy: false };
    await sleep(pollMs);
  }
}

const describeSeen = (p: Phase) =>
  p.seen.size
    ? [...p.seen]
        .sort((a, b) => a[1] - b[1])
        .map(([k, at]) => `${k} (from ${at.toFixed(1)} s)`)
        .join(', ')
    : 'none';

async function activeMachine(): Promise<string> {
  return waitFor(
    'one active app machine',
    async () => {
      const active = [...(await labAgents(WAIT_ANSWER_MS))].filter(([, s]) => s?.active).map(([n]) => n);
      return active.length === 1 ? active[0] : undefined;
    },
    60_000,
    500,
  );
}

async function run(lab: LabHandle): Promise<string[]> {
  const failures: string[] = [];
  const targets = await labMetrics();
  if (!targets.length) throw new Error('`vigil lab status --json` lists no metrics URL: is the lab applied?');
  const fake = values['witness-split-brain'] ? await fakeActiveAgent() : undefined;
  if (fake) targets.push(fake.target);
  const dir = await mkdtemp(join(tmpdir(), 'vigil-prometheus-'));
  const prom = new LabPrometheus(dir, await freePort());
  try {
    await prom.start(prometheusConfig(targets, RULES_FILE, lab.cluster.cluster.name));
    console.log(`prometheus: ${prom.base}, storage and config in ${dir}; ${targets.length} targets, rules ${RULES_FILE}`);
    await labSettled(lab);

    const tUp = performance.now();
    const up = await waitFor(
      `all ${targets.length} targets up`,
      async () => {
        const ts = await prom.targets();
        if (ts.length === targets.length && ts.every((t) => t.health === 'up')) return ts;
        throw new Error(ts.map((t) => `${t.scrapeUrl} ${t.health}${t.lastError ? ` (${t.lastError})` : ''}`).join('; '));
      },
      60_000,
      500,
    );
    console.log(`targets: ${up.length}/${targets.length} up after ${((performance.now() - tUp) / 1000).toFixed(1)} s:`);
    for (const t of up) console.log(`  ${t.labels.job} ${t.labels.machine} ${t.scrapeUrl}`);

    // Baseline: the same poll on the idle cluster; nothing may fire.
    const idle = await pollPhase(prom, 'idle', idleS);
    const firingIdle = [...idle.seen.keys()].filter((k) => k.endsWith(' firing'));
    if (firingIdle.length) failures.push(`idle window: alerts firing: ${firingIdle.join(', ')}`);

    // The failover: the active app machine killed.
    const old = await activeMachine();
    const tKill = Date.now();
    await labKill(old);
    console.log(`killed ${old} at ${new Date(tKill).toISOString()}`);
    const fired = (alerts: Alert[]) => alerts.some((a) => a.labels.alertname === FAILOVER && a.state === 'firing');
    const failover = await pollPhase(prom, 'failover', timeoutS, fired);
    const tSeen = (Date.now() - tKill) / 1000;
    let activeAtS: number | undefined;
    if (failover.endedBy) {
      const alert = (await prom.alerts()).find((a) => a.labels.alertname === FAILOVER && a.state === 'firing');
      if (alert?.activeAt) activeAtS = (Date.parse(alert.activeAt) - tKill) / 1000;
    } else failures.push(`${FAILOVER} did not fire within ${timeoutS} s of the kill`);
    const newActive = failover.endedBy ? await activeMachine() : '(none)';

    // The old machine back (as a standby), then a tail longer than the split-brain rule's `for`.
    // Left out when the failover alert did not fire: the run has failed, and the lab is left as it is.
    const tRevive = performance.now();
    if (failover.endedBy) {
      await labRevive(old);
      await labSettled(lab);
    }
    const back = (performance.now() - tRevive) / 1000;
    const tail = await pollPhase(prom, 'revive and tail', failover.endedBy ? tailS : 0);
    const count = await prom.scalar(`sum(vigil_failovers_total{kind="failover",result="success"})`);

    for (const p of [idle, failover, tail]) if (p.splitBrainSeen) failures.push(`${p.name}: ${SPLIT_BRAIN} appeared`);
    if (Math.max(idle.mostActive, failover.mostActive, tail.mostActive) > 1) failures.push('a poll saw more than one agent active');

    const polls = idle.polls + failover.polls + tail.polls;
    console.log(
      `\nReal Prometheus on a ${topology} lab: ${up.length} targets up (${[...new Set(up.map((t) => t.labels.job))].join(', ')}), scrape and rule evaluation every 1 s, a poll every ${pollMs} ms`,
    );
    console.log('| phase | seconds | polls | alerts seen (pending or firing) | most agents active at one poll | VigilSplitBrain |');
    console.log('|---|---|---|---|---|---|');
    const row = (p: Phase, s: string) =>
      console.log(`| ${p.name} | ${s} | ${p.polls} | ${describeSeen(p)} | ${p.mostActive} | ${p.splitBrainSeen ? '**seen**' : 'silent'} |`);
    row(idle, idleS.toFixed(0));
    row(failover, failover.endedBy ? `${tSeen.toFixed(1)} (kill to ${FAILOVER} firing)` : `${tSeen.toFixed(1)} (${FAILOVER} never fired)`);
    if (failover.endedBy) row(tail, `${(back + tailS).toFixed(0)} (revive ${back.toFixed(0)} + ${tailS.toFixed(0)})`);
    console.log(
      `\n${old} killed -> ${newActive} active; ${failover.endedBy ? `${FAILOVER} firing seen ${tSeen.toFixed(1)} s after the kill` : `${FAILOVER} not firing ${tSeen.toFixed(1)} s after the kill`}` +
        (activeAtS === undefined ? '' : ` (its activeAt: ${activeAtS.toFixed(1)} s)`) +
        `; vigil_failovers_total{kind="failover",result="success"} = ${count}; ${SPLIT_BRAIN} silent at ${polls} polls: ${failures.some((f) => f.includes(SPLIT_BRAIN)) ? 'NO' : 'yes'}`,
    );
  } catch (err) {
    console.log(`prometheus log, last lines:\n${prom.logTail()}`);
    throw err;
  } finally {
    await prom.stop();
    await rm(dir, { recursive: true, force: true });
    fake?.server.close();
  }
  return failures;
}

let lab: LabHandle;
if (values.existing) lab = await openLab();
else {
  await labDown();
  console.log(`--- ${topology}: lab up`);
  lab = await labUp({ topology });
}
let failures: string[];
try {
  failures = await run(lab);
} finally {
  if (!values.existing && !values.keep) await labDown();
}
if (failures.length) {
  console.log(`\nFAILED:\n${failures.map((f) => `- ${f}`).join('\n')}`);
  process.exitCode = 1;
} else console.log(`\nOK: ${SPLIT_BRAIN} silent throughout, ${FAILOVER} fired after the kill`);
