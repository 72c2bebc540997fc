/**
 * Application failover as a client sees it: for each fault on the active app machine, the time
 * from the fault to the first request answered through the proxy's :80 by another machine, and to
 * the first write acknowledged through :5000 after the fault; then the write pause of a planned
 * switchover (`vigil switchover`), measured by a client writing through :5000 every 20 ms.
 *
 * With `--checker` the lab's checker (src/lab/checker.ts, docs/lab.md) runs beside the clients
 * and every round is checked: no two machines serving at once, no acknowledged write lost. It adds
 * load to this host and the machines: the published figures are taken without it.
 *
 * With `--backend-tls` each topology runs twice in this process, plain and then with HTTPS from
 * the proxy to the app machines, verified (`application.backendTls`, certificates from the
 * cluster CA): the figures of both stand side by side.
 *
 * With `--startup S` the reference application takes S seconds to start (its health check answers
 * 503 until then, as a Java application server would), and `--mode cold --mode warm` measures, in
 * the same run, one lab per mode: `cold` starts the application on the standby only at failover
 * (its service `runsOn: active`, as before), `warm` keeps it running on every app machine
 * (`runsOn: every`) and failover only activates it. `--fault` picks faults by name (`machine`,
 * `process`; `--fault none`: only the switchover); `--skip-switchover` leaves the switchover out.
 *
 * With `--phases` each switchover round also prints where its time went: the lab machines'
 * journals (the observer's decisions, Patroni and PostgreSQL, HAProxy marking servers up and down,
 * the agents and the application) merged with the clients' marks, in milliseconds from the
 * request (src/lab/timeline.ts).
 *
 *   npx tsx bench/app-failover.ts [--rounds 3] [--topology distributed --topology pair] [--checker] [--backend-tls]
 *     [--startup 30 --mode cold --mode warm] [--fault process] [--skip-switchover] [--phases]
 */
import { parseArgs } from 'node:util';
import { withRole } from '../src/config/schema.ts';
import { labDown, labKill, labRevive, labRun, labSignal, labUp, type LabHandle } from '../src/lab/lab.ts';
import { REFAPP_PORT } from '../src/layout/network.ts';
import { VIGIL_INSTALL } from '../src/layout/units.ts';
import { Checker } from '../src/lab/checker.ts';
import { HttpProbe } from '../src/lab/probe.ts';
import { labSettled } from '../src/lab/settle.ts';
import type { LabTopology } from '../src/lab/topology.ts';
import { AckWriter } from '../src/lab/writer.ts';
import { withOps } from '../src/ops/context.ts';
import { LAB_OPS } from '../src/lab/target.ts';
import { sendRequest } from '../src/ops/requests.ts';
import { waitFor } from '../src/util/exec.ts';
import { formatTimeline, labTimeline, wallOf, type TimelineLine } from '../src/lab/timeline.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    topology: { type: 'string', multiple: true },
    checker: { type: 'boolean', default: false },
    'backend-tls': { type: 'boolean', default: false },
    startup: { type: 'string' },
    mode: { type: 'string', multiple: true },
    fault: { type: 'string', multiple: true },
    'skip-switchover': { type: 'boolean', default: false },
    phases: { type: 'boolean', default: false },
  },
});
/** Plain HTTP to the app machines, and with --backend-tls also verified HTTPS (the same lab shape otherwise). */
const variants = values['backend-tls'] ? [false, true] : [false];
const rounds = Number(values.rounds);
const topologies = (values.topology ?? ['distributed', 'pair']) as LabTopology[];
const modes = values.mode ?? ['cold'];
for (const m of modes) if (m !== 'cold' && m !== 'warm') throw new Error(`--mode ${m}: use cold or warm`);
const startupSeconds = values.startup === undefined ? undefined : Number(values.startup);
if (startupSeconds !== undefined && !(Number.isInteger(startupSeconds) && startupSeconds >= 0))
  throw new Error(`--startup ${values.startup}: a whole number of seconds`);

interface Fault {
  name: string;
  /** The fault takes the machine's PostgreSQL down too (in pair it may be the primary). */
  killsMachine: boolean;
  inject(node: string): Promise<unknown>;
  recover(node: string): Promise<unknown>;
}
const ALL_FAULTS: Fault[] = [
  { name: 'machine killed', killsMachine: true, inject: (n) => labKill(n), recover: (n) => labRevive(n) },
  { name: 'app process killed', killsMachine: false, inject: (n) => labSignal(n, 'app', 'SIGKILL'), recover: async () => {} },
];
const FAULTS = ALL_FAULTS.filter((f) => !values.fault || values.fault.some((word) => f.name.includes(word)));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (xs: number[]) => `${median(xs).toFixed(2)} | ${Math.max(...xs).toFixed(2)} | ${xs.map((x) => x.toFixed(1)).join(', ')}`;

/** The longest gap between successive moments (from `startMs`), and where it lies. */
function longestGap(atMs: number[], startMs: number): { ms: number; fromMs: number; toMs: number } {
  let best = { ms: 0, fromMs: startMs, toMs: startMs };
  let last = startMs;
  for (const at of atMs) {
    if (at - last > best.ms) best = { ms: at - last, fromMs: last, toMs: at };
    last = at;
  }
  return best;
}

interface Row {
  topology: string;
  what: string;
  http: number[];
  write: number[];
}

/**
 * With a warm standby, until the application answers its own health check on every app machine:
 * the one a fault killed is started again by its agent and takes its start-up time, and a round
 * begun before it is up would measure a cold start. Asked on each machine's loopback (the app's
 * port is not reachable from outside).
 */
async function warmEverywhere(lab: LabHandle): Promise<void> {
  if (!lab.cluster.application.services.some((s) => s.runsOn === 'every')) return;
  const check = `fetch('http://127.0.0.1:${REFAPP_PORT}/health').then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))`;
  for (const m of withRole(lab.cluster, 'app'))
    await waitFor(
      `the warm application on ${m.name} to answer its health check`,
      async () => ((await labRun(m.name, [VIGIL_INSTALL.node, '-e', check])).code === 0 ? true : undefined),
      180_000,
      1000,
    );
}

async function measure(lab: LabHandle, topology: string): Promise<Row[]> {
  const { cluster, secrets } = lab;
  const proxy = withRole(cluster, 'proxy')[0]!;
  const probe = new HttpProbe(`http://${proxy.address}:${cluster.proxy.httpPort}${cluster.application.healthPath}`);
  const writer = new AckWriter({
    host: proxy.address,
    port: cluster.proxy.postgresPort,
    user: cluster.database.appUser,
    password: secrets.appDbPassword,
    database: cluster.database.appDatabase,
    intervalMs: 20,
  });
  await writer.prepare();
  const checker = values.checker ? new Checker(lab) : undefined;
  await checker?.start();
  const broken: string[] = [];
  probe.start();
  writer.start();
  const rows: Row[] = [];
  try {
    for (const fault of FAULTS) {
      const row: Row = { topology, what: fault.name, http: [], write: [] };
      for (let r = 1; r <= rounds; r++) {
        await labSettled(lab);
        await warmEverywhere(lab);
        const old = await waitFor('a machine serving', async () => probe.current() ?? undefined, 30_000, 50);
        const t0 = performance.now();
        await fault.inject(old);
        const served = await waitFor('another machine to serve', async () => probe.firstOtherAfter(t0, old), 120_000, 20);
        // A write in flight as the machine dies may still be acknowledged by it (pair): count the
        // first one from elsewhere. When only the app dies, its machine's database goes on.
        const oldAddress = fault.killsMachine ? cluster.machines.find((m) => m.name === old)!.address : undefined;
        const wrote = await waitFor('a write after the fault', async () => writer.firstAfter(t0, oldAddress), 120_000, 20);
        row.http.push((served.atMs - t0) / 1000);
        row.write.push((wrote.atMs - t0) / 1000);
        console.log(
          `${topology} ${fault.name} round ${r}: ${old} -> ${served.node}: :80 back after ${((served.atMs - t0) / 1000).toFixed(2)} s, first write after ${((wrote.atMs - t0) / 1000).toFixed(2)} s`,
        );
        await fault.recover(old);
        if (checker) {
          await checker.exactlyOneActive(served.node!, 60_000);
          const report = checker.check({ sinceMs: t0, takeover: served.node! });
          const lost = await checker.missingWrites();
          console.log(`${topology} ${fault.name} round ${r}: ${report.text}; ${lost.http.length} of the checker's writes missing`);
          if (report.violations.length || report.servedAfterTakeover.length || lost.http.length)
            broken.push(`${topology} ${fault.name} round ${r}:\n${report.text}`);
        }
      }
      rows.push(row);
    }
    const pause: Row = { topology, what: 'switchover: longest gap between acknowledged writes', http: [], write: [] };
    for (let r = 1; r <= (values['skip-switchover'] ? 0 : rounds); r++) {
      await labSettled(lab);
      await warmEverywhere(lab);
      const t0 = performance.now();
      const active = await withOps(LAB_OPS, (ctx) => sendRequest(ctx, { kind: 'switchover' }, () => {}));
      const tAnswered = performance.now();
      // The pause ends when the new machine answers through :80 and writes flow again, plus a margin.
      const servedBy = await waitFor('the new machine to serve', async () => probe.answers.find((a) => a.atMs > t0 && a.node === active.node), 60_000, 50);
      const t1 = servedBy.atMs + 1000;
      await waitFor('writes after the switchover', async () => writer.firstAfter(t1), 60_000, 50);
      const acks = writer.acked.filter((a) => a.atMs >= t0 - 100 && a.atMs <= t1).map((a) => a.atMs);
      const writeGap = longestGap(acks, acks[0] ?? t0);
      const httpGap = longestGap(
        probe.answers.filter((a) => a.atMs >= t0 && a.atMs <= t1 && a.node).map((a) => a.atMs),
        t0,
      );
      pause.write.push(writeGap.ms / 1000);
      pause.http.push(httpGap.ms / 1000);
      console.log(
        `${topology} switchover round ${r}: longest write gap ${(writeGap.ms / 1000).toFixed(2)} s, longest :80 gap ${(httpGap.ms / 1000).toFixed(2)} s`,
      );
      if (values.phases) {
        const marks: TimelineLine[] = [
          { atMs: wallOf(t0), source: 'client', message: 'switchover requested' },
          { atMs: wallOf(tAnswered), source: 'client', message: `request answered: ${active.node} active` },
          { atMs: wallOf(writeGap.fromMs), source: 'client', message: ':5000 last write acknowledged before the longest gap' },
          { atMs: wallOf(writeGap.toMs), source: 'client', message: `:5000 first write acknowledged after it (${writeGap.ms.toFixed(0)} ms)` },
          { atMs: wallOf(httpGap.fromMs), source: 'client', message: ':80 last answer before the longest gap' },
          { atMs: wallOf(httpGap.toMs), source: 'client', message: `:80 first answer after it (${httpGap.ms.toFixed(0)} ms)` },
        ];
        const lines = await labTimeline(cluster, wallOf(t0) - 500, wallOf(t1), marks);
        console.log(`${topology} switchover round ${r}, where the time went (ms from the request):\n${formatTimeline(lines, wallOf(t0))}`);
      }
    }
    if (pause.http.length) rows.push(pause);
  } finally {
    await probe.stop();
    await writer.stop();
    await checker?.stop();
  }
  if (broken.length) throw new Error(`the checker found violations or lost writes:\n${broken.join('\n')}`);
  const lost = await writer.missing();
  console.log(`${topology}: ${writer.acked.length} writes acknowledged, ${lost.length} missing afterwards`);
  if (lost.length) throw new Error(`acknowledged writes lost: ${lost.join(', ')}`);
  return rows;
}

const all: Row[] = [];
for (const topology of topologies)
  for (const mode of modes)
    for (const tls of variants) {
      await labDown();
      const base = modes.length > 1 || startupSeconds !== undefined ? `${topology} ${mode}` : topology;
      const label = tls ? `${base}, backend TLS` : base;
      console.log(`--- ${label}: lab up${startupSeconds === undefined ? '' : ` (the application starts in ${startupSeconds} s)`}`);
      const lab = await labUp({
        topology,
        application: { warm: mode === 'warm', ...(startupSeconds === undefined ? {} : { refappStartupSeconds: startupSeconds }) },
        ...(tls ? { backendTls: { verify: true } } : {}),
        // A cold standby's activation must be given the start-up time, or the observer moves on from a machine still starting.
        ...(startupSeconds === undefined ? {} : { timers: { appStartTimeoutMs: (startupSeconds + 15) * 1000 } }),
      });
      try {
        all.push(...(await measure(lab, label)));
      } finally {
        await labDown();
      }
    }
console.log(
  `\nApplication failover, ${rounds} rounds each${startupSeconds === undefined ? '' : `, application start-up ${startupSeconds} s`} (seconds; median | worst | rounds)`,
);
console.log('| topology | fault | :80 answered by another machine | first write through :5000 |');
console.log('|---|---|---|---|');
for (const r of all) console.log(`| ${r.topology} | ${r.what} | ${fmt(r.http)} | ${fmt(r.write)} |`);
