/**
 * What Vigil's daemons cost while nothing happens, on what ships: every lab machine boots systemd
 * and runs the artifact `vigil apply` installed (`/opt/vigil/bin/node /opt/vigil/lib/vigil.mjs`),
 * so the observer and the agents measured here are the processes a customer's machines run. After
 * the lab has settled, each daemon's CPU time (utime + stime from /proc/PID/stat) is read at the
 * start and the end of a window, and its resident memory (VmRSS) at the end. The baseline, in the
 * same lab and window: Patroni's own process on the db machines, a peer that also polls etcd and
 * its PostgreSQL in a loop.
 *
 *   npx tsx bench/footprint.ts [--topology distributed] [--settle-ms 20000] [--window-ms 30000]
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { labDown, labUp } from '../src/lab/lab.ts';
import { listProcesses } from '../src/lab/procs.ts';
import { labSettled } from '../src/lab/settle.ts';
import type { LabTopology } from '../src/lab/topology.ts';
import { run, sleep } from '../src/util/exec.ts';

const { values } = parseArgs({
  options: {
    topology: { type: 'string', default: 'distributed' },
    'settle-ms': { type: 'string', default: '20000' },
    'window-ms': { type: 'string', default: '30000' },
  },
});
const settleMs = Number(values['settle-ms']);
const windowMs = Number(values['window-ms']);
const DAEMONS = ['observer', 'agent', 'patroni'] as const;

/** CPU seconds used so far (utime + stime) and resident memory in MiB, or undefined once the process is gone. */
async function usage(pid: number, ticks: number): Promise<{ cpuS: number; rssMiB: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    return { cpuS: (Number(f[11]) + Number(f[12])) / ticks, rssMiB: rssKiB / 1024 };
  } catch {
    return undefined;
  }
}

const ticks = Number((await run('getconf', ['CLK_TCK'])).stdout.trim());
await labDown();
const lab = await labUp({ topology: values.topology as LabTopology });
await labSettled(lab);
await sleep(settleMs);

const found: { machine: string; daemon: (typeof DAEMONS)[number]; pid: number }[] = [];
for (const m of lab.cluster.machines)
  for (const p of await listProcesses(m.name))
    if ((DAEMONS as readonly string[]).includes(p.name)) found.push({ machine: m.name, daemon: p.name as (typeof DAEMONS)[number], pid: p.pid });
const before = await Promise.all(found.map((f) => usage(f.pid, ticks)));
const t0 = performance.now();
await sleep(windowMs);
const after = await Promise.all(found.map((f) => usage(f.pid, ticks)));
const seconds = (performance.now() - t0) / 1000;
await labDown();

const started = new Date().toISOString().slice(0, 10);
console.log(
  `\nIdle footprint on a ${values.topology} lab (${started}; ${(settleMs / 1000).toFixed(0)} s settled, ${seconds.toFixed(1)} s window; the artifact under systemd):`,
);
console.log('| daemon | machine | RSS (MiB) | CPU, % of a core |\n|---|---|---|---|');
const order = (d: string) => DAEMONS.indexOf(d as (typeof DAEMONS)[number]);
const rows = found.map((f, i) => ({ ...f, a: before[i], b: after[i] })).sort((x, y) => order(x.daemon) - order(y.daemon) || x.machine.localeCompare(y.machine));
for (const r of rows) {
  if (!r.a || !r.b) {
    console.log(`| ${r.daemon} | ${r.machine} | (exited during the window) | |`);
    continue;
  }
  const label = r.daemon === 'patroni' ? 'Patroni (baseline)' : `vigil ${r.daemon}`;
  console.log(`| ${label} | ${r.machine} | ${r.b.rssMiB.toFixed(0)} | ${(((r.b.cpuS - r.a.cpuS) / seconds) * 100).toFixed(2)} |`);
}
