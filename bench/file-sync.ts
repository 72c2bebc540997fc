/**
 * File sync, measured on a `pair` lab:
 *
 * 1. Lag under a steady stream of small files: files are written on the active machine at a
 *    steady rate; the time from each write to its presence on the standby (seen by inotify there,
 *    then checked by size) for Vigil, and for lsyncd with its default settings (delay 15 s) run
 *    beside it on the same stream into another directory of the standby. lsyncd gets the easier
 *    path: local rsync on this host, no SSH.
 * 2. Initial sync of a large tree (many small files and one large file): the time Vigil's agent
 *    takes to bring an empty standby directory level after it starts (its full reconciliation,
 *    with --checksum), beside plain `rsync -a` of the same tree into an empty directory on this
 *    host (again no SSH for the baseline).
 *
 *   npx tsx bench/file-sync.ts [--files 400] [--rate 20] [--tree-files 50000] [--big-mb 1024]
 */
import { spawn } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PATHS } from '../src/layout/paths.ts';
import { labAgents, labDown, labStart, labStopUnit, labUp, type LabHandle } from '../src/lab/lab.ts';
import { readMachineLog } from '../src/lab/logs.ts';
import { hostPathOf } from '../src/lab/paths.ts';
import { labSettled } from '../src/lab/settle.ts';
import { withOps } from '../src/ops/context.ts';
import { LAB_OPS } from '../src/lab/target.ts';
import { percentile } from '../src/sync/protocol.ts';
import { run, sleep, waitFor } from '../src/util/exec.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '400' },
    rate: { type: 'string', default: '20' },
    'tree-files': { type: 'string', default: '50000' },
    'big-mb': { type: 'string', default: '1024' },
  },
});
const FILES = Number(values.files);
const RATE = Number(values.rate);
const TREE_FILES = Number(values['tree-files']);
const BIG_MB = Number(values['big-mb']);

const DIR = PATHS.refappAttachments;
const onHost = (node: string, ...rel: string[]) => join(hostPathOf(node, DIR), ...rel);
const fmt = (xs: number[]) =>
  `p50 ${percentile(xs, 50).toFixed(0)} ms | p95 ${percentile(xs, 95).toFixed(0)} ms | p99 ${percentile(xs, 99).toFixed(0)} ms | max ${Math.max(...xs).toFixed(0)} ms | n ${xs.length}`;

/** Records when each expected file appears, complete, in a directory (inotify, then a size check). */
function arrivals(dir: string, expected: Map<string, { size: number; at: number }>): { lags: Map<string, number>; close(): void } {
  const lags = new Map<string, number>();
  const check = async (name: string) => {
    const e = expected.get(name);
    if (!e || lags.has(name)) return;
    const st = await stat(join(dir, name)).catch(() => null);
    if (st?.size === e.size) lags.set(name, performance.now() - e.at);
  };
  const w = watch(dir, (_t, name) => void (name && check(name.toString())));
  const sweep = setInterval(() => void Promise.all([...expected.keys()].filter((k) => !lags.has(k)).map(check)), 1000);
  return { lags, close: () => (w.close(), clearInterval(sweep)) };
}

async function streamLag(lab: LabHandle, active: string, standby: string): Promise<void> {
  const baselineDir = hostPathOf(standby, '/var/lib/vigil/bench-lsyncd');
  await rm(baselineDir, { recursive: true, force: true });
  await mkdir(baselineDir, { recursive: true });
  const conf = hostPathOf(active, '/var/lib/vigil/bench-lsyncd.lua');
  await writeFile(conf, `settings { nodaemon = true, insist = true }\nsync { default.rsync, source = "${onHost(active)}/", target = "${baselineDir}/" }\n`);
  const lsyncd = spawn('lsyncd', [conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let lsyncdErr = '';
  lsyncd.stderr.on('data', (d: Buffer) => (lsyncdErr += d.toString()));
  try {
    await sleep(2000); // lsyncd's start-up sync of the existing tree
    const expected = new Map<string, { size: number; at: number }>();
    const vigil = arrivals(onHost(standby), expected);
    const base = arrivals(baselineDir, expected);
    const stamp = Date.now();
    const t0 = performance.now();
    for (let i = 0; i < FILES; i++) {
      const name = `stream-${stamp}-${String(i).padStart(6, '0')}.txt`;
      const body = `file ${i} `.repeat(50 + (i % 200));
      await writeFile(onHost(active, name), body);
      expected.set(name, { size: Buffer.byteLength(body), at: performance.now() });
      const next = t0 + ((i + 1) * 1000) / RATE;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await waitFor('every file on the standby (Vigil)', async () => (vigil.lags.size === FILES ? true : undefined), 60_000, 100);
    await waitFor('every file in the lsyncd copy', async () => (base.lags.size === FILES ? true : undefined), 90_000, 100);
    vigil.close();
    base.close();
    console.log(`\n## Lag from a write on the active machine to its presence on the standby: ${FILES} files of 0.5 to 2.5 KB at ${RATE}/s`);
    console.log(`vigil (inotify + rsync over ssh, batch delay ${lab.cluster.fileSync.batchDelayMs} ms): ${fmt([...vigil.lags.values()])}`);
    console.log(`lsyncd 2.2 defaults (default.rsync, delay 15 s, local):  ${fmt([...base.lags.values()])}`);
  } finally {
    lsyncd.kill('SIGTERM');
    await new Promise((r) => lsyncd.once('close', r));
    if (lsyncdErr.trim()) console.log(`# lsyncd said: ${lsyncdErr.trim().split('\n').slice(-3).join(' | ')}`);
    await rm(baselineDir, { recursive: true, force: true });
    await rm(conf, { force: true });
  }
}

async function makeTree(root: string): Promise<number> {
  const t = performance.now();
  const perDir = 200;
  for (let d = 0; d * perDir < TREE_FILES; d++) {
    const dir = join(root, `d${String(d).padStart(4, '0')}`);
    await mkdir(dir, { recursive: true });
    const writes = [];
    for (let f = d * perDir; f < Math.min(TREE_FILES, (d + 1) * perDir); f++) writes.push(writeFile(join(dir, `f${f}.dat`), `${f}:`.repeat(100 + (f % 900))));
    await Promise.all(writes);
  }
  await run('sh', ['-c', `head -c ${BIG_MB}M /dev/urandom > "$1"`, 'sh', join(root, 'large.bin')], { timeoutMs: 1_800_000 });
  return (performance.now() - t) / 1000;
}

async function countTree(root: string): Promise<string> {
  const script = 'find "$1" -type f -printf \'%s\\n\' 2>/dev/null | awk \'{ n++; s += $1 } END { printf "%d files, %.1f MiB", n, s / 1048576 }\'';
  return (await run('sh', ['-c', script, 'sh', root], { timeoutMs: 600_000 })).stdout.trim();
}

async function initialSync(active: string, standby: string): Promise<void> {
  const src = onHost(active, 'bench-tree');
  await rm(src, { recursive: true, force: true });
  const made = await makeTree(src);
  const size = await countTree(src);
  console.log(
    `\n## Initial sync of a large tree: ${size} (${TREE_FILES} small files in ${Math.ceil(TREE_FILES / 200)} directories and one ${BIG_MB} MiB file; made in ${made.toFixed(1)} s)`,
  );
  // The running pusher carries the new tree as it is written; wait for it, then start over from empty.
  const t = performance.now();
  await waitFor(
    'the tree on the standby (carried by the watch as it was written)',
    async () => ((await countTree(onHost(standby, 'bench-tree'))) === size ? true : undefined),
    900_000,
    2000,
  );
  console.log(`vigil, carried change by change while it was written: complete ${((performance.now() - t) / 1000).toFixed(1)} s after the writing ended`);

  await withOps(LAB_OPS, (ctx) =>
    ctx.store.setMaintenance({ since: new Date().toISOString(), by: 'bench/file-sync.ts', reason: 'restarting the active agent' }),
  );
  try {
    await labStopUnit(active, 'agent');
    await rm(onHost(standby, 'bench-tree'), { recursive: true, force: true });
    const logStart = (await readMachineLog(active, 'agent')).length;
    const t0 = performance.now();
    await labStart(active, 'agent');
    const line = await waitFor(
      'the initial reconciliation',
      async () =>
        (await readMachineLog(active, 'agent'))
          .slice(logStart)
          .split('\n')
          .find((l) => l.includes('"sync-reconciled"')),
      900_000,
      500,
    );
    const total = (performance.now() - t0) / 1000;
    const ms = (JSON.parse(line) as { ms: number }).ms;
    if ((await countTree(onHost(standby, 'bench-tree'))) !== size) throw new Error('the standby does not hold the whole tree after the reconciliation');
    console.log(
      `vigil, agent restarted with an empty standby directory: reconciliation (rsync -a --delete --checksum over ssh) ${(ms / 1000).toFixed(1)} s; from the agent's start ${total.toFixed(1)} s`,
    );
  } finally {
    await withOps(LAB_OPS, (ctx) => ctx.store.clearMaintenance());
  }
  const plain = hostPathOf(standby, '/var/lib/vigil/bench-plain');
  await rm(plain, { recursive: true, force: true });
  const t1 = performance.now();
  await run('rsync', ['-a', `${src}/`, `${plain}/`], { timeoutMs: 1_800_000 });
  console.log(`plain rsync -a of the same tree into an empty directory (local, no ssh): ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  await rm(plain, { recursive: true, force: true });
  await rm(src, { recursive: true, force: true });
}

await labDown();
const lab = await labUp({ topology: 'pair' });
try {
  await labSettled(lab);
  const agents = await labAgents();
  const active = [...agents].find(([, s]) => s?.active)![0];
  const standby = active === 'app1' ? 'app2' : 'app1';
  console.log(
    `# pair lab: ${active} active, ${standby} standby; command: npx tsx bench/file-sync.ts --files ${FILES} --rate ${RATE} --tree-files ${TREE_FILES} --big-mb ${BIG_MB}`,
  );
  await streamLag(lab, active, standby);
  await initialSync(active, standby);
} finally {
  await labDown();
}
