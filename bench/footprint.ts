/**
 * What Vigil's daemons cost, on what ships: every lab machine boots systemd and runs the artifact
 * `vigil apply` installed (`/opt/vigil/bin/node /opt/vigil/lib/vigil.mjs`, each daemon's command
 * line is printed), so the observer and the agents measured here are the processes a customer's
 * machines run. Each daemon's CPU time is read from /proc/PID/stat at the start and the end of a
 * window, its own (utime + stime) and that of the children it waited for (cutime + cstime: the
 * `systemctl` calls of an agent), and its resident memory (VmRSS) at the end. The baseline, in the
 * same lab and windows: Patroni's own process on the db machines, a peer that also polls etcd and
 * its PostgreSQL in a loop.
 *
 * Three windows, in one run:
 * - idle: after the lab has settled;
 * - during a failover: from killing the active machine's application process (SIGKILL) until
 *   `--failover-ms` later (the observer detects it, fails over, the new machine starts);
 * - the observer from the sources through tsx (how the lab ran the daemons before it ran the
 *   artifact): the checkout is copied into the observer machine, its vigil-observer.service is
 *   stopped and its command line, with `bin/vigil.js` in place of the bundle (same node, same
 *   flags), runs as a transient unit, idle, then the unit is stopped and the service started
 *   again. `--no-tsx` leaves this out.
 * - the observer without its Prometheus metrics: `metrics: { enabled: false }` appended to the
 *   observer machine's copy of the cluster file and its service restarted, idle, then the file
 *   restored and the service restarted. The idle window above scrapes every Vigil daemon's
 *   /metrics every 5 s (Prometheus's default is 15 s), so it includes what scrapes cost.
 *   `--no-metrics-off` leaves this out.
 *
 *   npx tsx bench/footprint.ts [--topology distributed] [--settle-ms 20000] [--window-ms 30000] [--failover-ms 15000] [--no-tsx] [--no-metrics-off]
 */
import { cp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { labDown, labSignal, labUp, type LabHandle } from '../src/lab/lab.ts';
import { machineRoot } from '../src/lab/paths.ts';
import { listProcesses } from '../src/lab/procs.ts';
import { labSettled } from '../src/lab/settle.ts';
import { LabShell } from '../src/lab/shell.ts';
import type { LabTopology } from '../src/lab/topology.ts';
import { VIGIL_INSTALL } from '../src/layout/units.ts';
import { daemonCommand } from '../src/render/systemd.ts';
import { PATHS } from '../src/layout/paths.ts';
import { metricsUrl } from '../src/layout/network.ts';
import { runsAgent } from '../src/config/schema.ts';
import { sleep } from '../src/util/exec.ts';
import { usage } from './proc-usage.ts';

const { values } = parseArgs({
  options: {
    topology: { type: 'string', default: 'distributed' },
    'settle-ms': { type: 'string', default: '20000' },
    'window-ms': { type: 'string', default: '30000' },
    'failover-ms': { type: 'string', default: '15000' },
    'no-tsx': { type: 'boolean', default: false },
    'no-metrics-off': { type: 'boolean', default: false },
  },
});
const settleMs = Number(values['settle-ms']);
const windowMs = Number(values['window-ms']);
const failoverMs = Number(values['failover-ms']);
const DAEMONS = ['observer', 'agent', 'patroni'] as const;
type Daemon = (typeof DAEMONS)[number];

interface Found {
  machine: string;
  daemon: Daemon;
  pid: number;
  cmdline: string;
}
interface Row extends Found {
  rssMiB?: number;
  cpuPct?: number;
  childPct?: number;
}

async function daemons(lab: LabHandle, only?: { machine: string; daemon: Daemon }): Promise<Found[]> {
  const found: Found[] = [];
  for (const m of lab.cluster.machines) {
    if (only && m.name !== only.machine) continue;
    for (const p of await listProcesses(m.name)) {
      if (!(DAEMONS as readonly string[]).includes(p.name) || (only && p.name !== only.daemon)) continue;
      const cmdline = (await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean).join(' ');
      found.push({ machine: m.name, daemon: p.name as Daemon, pid: p.pid, cmdline });
    }
  }
  return found;
}

/** Every daemon's share of a core over a window of `ms` that `during` (if given) starts at once. */
async function measure(found: Found[], ms: number, during?: () => Promise<unknown>): Promise<{ rows: Row[]; seconds: number }> {
  const before = await Promise.all(found.map((f) => usage(f.pid)));
  const t0 = performance.now();
  await during?.();
  await sleep(Math.max(0, ms - (performance.now() - t0)));
  const after = await Promise.all(found.map((f) => usage(f.pid)));
  const seconds = (performance.now() - t0) / 1000;
  const rows = found.map((f, i): Row => {
    const a = before[i];
    const b = after[i];
    if (!a || !b) return f;
    return { ...f, rssMiB: b.rssMiB, cpuPct: ((b.cpuS - a.cpuS) / seconds) * 100, childPct: ((b.childCpuS - a.childCpuS) / seconds) * 100 };
  });
  return { rows, seconds };
}

function print(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  console.log("| daemon | machine | RSS (MiB) | CPU, % of a core | its children's CPU, % |\n|---|---|---|---|---|");
  const order = (d: Daemon) => DAEMONS.indexOf(d);
  for (const r of [...rows].sort((x, y) => order(x.daemon) - order(y.daemon) || x.machine.localeCompare(y.machine))) {
    const label = r.daemon === 'patroni' ? 'Patroni (baseline)' : `vigil ${r.daemon}`;
    if (r.cpuPct === undefined) console.log(`| ${label} | ${r.machine} | (exited during the window) | | |`);
    else console.log(`| ${label} | ${r.machine} | ${r.rssMiB!.toFixed(0)} | ${r.cpuPct.toFixed(2)} | ${r.childPct!.toFixed(2)} |`);
  }
}

/** The observer from the sources through tsx, in place of its service, measured idle; the service is back afterwards. */
async function observerFromSources(lab: LabHandle): Promise<Row[]> {
  const host = lab.cluster.machines.find((m) => m.roles.includes('observer'))!.name;
  const sh = new LabShell(host);
  const src = '/opt/vigil-src';
  const root = join(machineRoot(host), src);
  const checkout = join(import.meta.dirname, '..');
  for (const part of ['bin', 'src', 'package.json', 'tsconfig.json']) await cp(join(checkout, part), join(root, part), { recursive: true });
  // node_modules may be a symlink (a worktree's): copied as what it points to.
  await cp(join(checkout, 'node_modules'), join(root, 'node_modules'), { recursive: true, dereference: true });
  const unit = 'vigil-observer-tsx';
  try {
    await sh.exec(['systemctl', 'stop', 'vigil-observer.service'], { timeoutMs: 30_000 });
    const started = await sh.exec(
      // The service's own command line (same node, same flags), the sources' entry in place of the bundle.
      [
        'systemd-run',
        `--unit=${unit}`,
        '--setenv=NODE_ENV=production',
        '--setenv=MALLOC_ARENA_MAX=2',
        ...daemonCommand('observer', host).map((a) => (a === VIGIL_INSTALL.entry ? `${src}/bin/vigil.js` : a)),
      ],
      { timeoutMs: 30_000 },
    );
    if (started.code !== 0) throw new Error(`systemd-run: ${started.stderr}`);
    await labSettled(lab);
    await sleep(settleMs);
    const found = await daemons(lab, { machine: host, daemon: 'observer' });
    if (found.length !== 1 || !found[0]!.cmdline.includes('bin/vigil.js'))
      throw new Error(`the observer from the sources is not what runs: ${found.map((f) => f.cmdline).join('; ')}`);
    return (await measure(found, windowMs)).rows;
  } finally {
    await sh.exec(['systemctl', 'stop', unit], { timeoutMs: 30_000 });
    await sh.exec(['systemctl', 'start', 'vigil-observer.service'], { timeoutMs: 30_000 });
    await rm(root, { recursive: true, force: true });
  }
}

/** Scrapes every Vigil daemon's /metrics every `everyMs` until stopped; returns how many scrapes answered 200. */
function scraping(lab: LabHandle, everyMs: number): () => Promise<{ ok: number; failed: number }> {
  const urls = lab.cluster.machines.flatMap((m) => [
    ...(runsAgent(lab.cluster, m) ? [metricsUrl(lab.cluster, m, 'agent')] : []),
    ...(m.roles.includes('observer') ? [metricsUrl(lab.cluster, m, 'observer')] : []),
  ]);
  const counts = { ok: 0, failed: 0 };
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      await Promise.all(
        urls.map(async (u) => {
          const r = await fetch(u, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
          await r?.arrayBuffer();
          if (r?.status === 200) counts.ok++;
          else counts.failed++;
        }),
      );
      await sleep(everyMs);
    }
  })();
  return async () => {
    stop = true;
    await loop;
    return counts;
  };
}

/** The observer with `metrics.enabled: false` in its machine's cluster file, idle; the file and the service are restored afterwards. */
async function observerWithoutMetrics(lab: LabHandle): Promise<Row[]> {
  const host = lab.cluster.machines.find((m) => m.roles.includes('observer'))!.name;
  const sh = new LabShell(host);
  const file = PATHS.clusterFile;
  const restart = async () => {
    const r = await sh.exec(['systemctl', 'restart', 'vigil-observer.service'], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`systemctl restart vigil-observer: ${r.stderr}`);
  };
  const edit = await sh.exec(['sh', '-c', `cp -p ${file} ${file}.bench && printf '\nmetrics:\n  enabled: false\n' >> ${file}`], { timeoutMs: 10_000 });
  if (edit.code !== 0) throw new Error(`editing ${file} on ${host}: ${edit.stderr}`);
  try {
    await restart();
    await labSettled(lab);
    await sleep(settleMs);
    const found = await daemons(lab, { machine: host, daemon: 'observer' });
    const listening = await fetch(
      metricsUrl(
        lab.cluster,
        lab.cluster.machines.find((m) => m.name === host)!,
        'observer',
      ),
      { signal: AbortSignal.timeout(2000) },
    ).then(
      () => true,
      () => false,
    );
    if (listening) throw new Error('the observer still serves /metrics with metrics.enabled: false');
    return (await measure(found, windowMs)).rows;
  } finally {
    await sh.exec(['sh', '-c', `mv ${file}.bench ${file}`], { timeoutMs: 10_000 });
    await restart();
  }
}

await labDown();
const lab = await labUp({ topology: values.topology as LabTopology });
try {
  await labSettled(lab);
  await sleep(settleMs);
  const started = new Date().toISOString().slice(0, 10);
  const found = await daemons(lab);
  console.log(`\nWhat runs (${values.topology} lab, ${started}):`);
  for (const [d, c] of new Map(found.map((f) => [f.daemon, f.cmdline]))) console.log(`  ${d}: ${c}`);

  const stopScraping = scraping(lab, 5000);
  const idle = await measure(found, windowMs);
  const scrapes = await stopScraping();
  print(
    `Idle (${(settleMs / 1000).toFixed(0)} s settled, ${idle.seconds.toFixed(1)} s window; the artifact under systemd; every daemon's /metrics scraped every 5 s: ${scrapes.ok} scrapes answered, ${scrapes.failed} failed):`,
    idle.rows,
  );

  const serving = (
    await Promise.all(
      found.filter((f) => f.daemon === 'agent').map(async (f) => ((await listProcesses(f.machine)).some((p) => p.name === 'app') ? f.machine : undefined)),
    )
  ).find(Boolean);
  if (!serving) throw new Error('no app machine runs the application');
  const failover = await measure(found, failoverMs, () => labSignal(serving, 'app', 'SIGKILL'));
  print(`During a failover (the application process on ${serving} killed at the window's start, ${failover.seconds.toFixed(1)} s window):`, failover.rows);

  if (!values['no-metrics-off']) {
    await labSettled(lab);
    const off = await observerWithoutMetrics(lab);
    const on = idle.rows.find((r) => r.daemon === 'observer')!;
    print(
      'The observer without metrics (metrics.enabled: false), idle, beside the idle window above (metrics on, scraped every 5 s):',
      [...off, on].map((r, i) => ({ ...r, machine: `${r.machine} (${i === 0 ? 'metrics off' : 'metrics on'})` })),
    );
  }

  if (!values['no-tsx']) {
    await labSettled(lab);
    const tsx = await observerFromSources(lab);
    const artifact = idle.rows.find((r) => r.daemon === 'observer')!;
    print(
      'The observer from the sources through tsx, idle (same settling and window), beside the artifact above:',
      [...tsx, artifact].map((r, i) => ({ ...r, machine: `${r.machine} (${i === 0 ? 'tsx' : 'artifact'})` })),
    );
  }
} finally {
  await labDown();
}
