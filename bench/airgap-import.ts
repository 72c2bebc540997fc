/**
 * The cluster import of a ~1 GiB air-gap bundle (issue 17), measured on a lab, beside a plain
 * `rsync -a` of the same files carried by hand the same way, in the same run:
 *
 * - vigil: `vigil airgap keys init` and `vigil airgap bundle` in a temporary directory (no fetch),
 *   then `vigil airgap import BUNDLE --trust FILE --lab` until both app machines hold the set.
 *   Split by the command's own progress lines: verify (on this host), backup (pg_dump on the
 *   primary), copy to the active machine, import there (verified again, swapped in), then
 *   replication to the standby (file sync) from the command's exit until the standby holds every
 *   file at its size, and until `vigil airgap status` says every app machine matches its manifest
 *   (each agent hashes the set again in the background).
 * - baseline: `rsync -a` of the same source directory from this host to the active machine over
 *   its sshd, then from the active machine to the standby over the standby's sshd (a key of this
 *   run's own, removed at the end), as an admin would carry the files without Vigil.
 *
 * In the lab the copy to the active machine is a file write on this host into the machine's
 * root filesystem (the lab's shell, src/lab/shell.ts), not SSH; on real machines it goes over
 * SSH. The baseline's first leg goes over SSH, so the copy step favours Vigil here.
 *
 * Uses the running lab of this VIGIL_LAB_ID if there is one (it keeps the imported set there: the
 * cluster's record names it), else brings up its own and takes it down at the end. Everything
 * else it made is removed on every exit path, Ctrl-C included.
 *
 *   VIGIL_LAB_ID=N npx tsx bench/airgap-import.ts [--mib 1024] [--large 3] [--small 2000] [--part-mib 256] [--topology distributed|pair]
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, open, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Machine } from '../src/config/schema.ts';
import { labAgents, labDown, labUp, openLab, type LabHandle } from '../src/lab/lab.ts';
import { LAB_DIR, LAB_ID, hostPathOf } from '../src/lab/paths.ts';
import { LabShell } from '../src/lab/shell.ts';
import { labSettled } from '../src/lab/settle.ts';
import { readState } from '../src/lab/state.ts';
import { LAB_OPS } from '../src/lab/target.ts';
import { withOps } from '../src/ops/context.ts';
import { clusterStatus } from '../src/ops/status.ts';
import { run, sleep } from '../src/util/exec.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    large: { type: 'string', default: '3' },
    small: { type: 'string', default: '2000' },
    'part-mib': { type: 'string', default: '256' },
    topology: { type: 'string', default: 'distributed' },
  },
});
const MIB = Number(values.mib);
const LARGE = Number(values.large);
const SMALL = Number(values.small);
const PART_MIB = Number(values['part-mib']);
const TOPOLOGY = values.topology as 'distributed' | 'pair';
if (TOPOLOGY !== 'distributed' && TOPOLOGY !== 'pair') throw new Error(`--topology ${String(values.topology)}: distributed or pair`);
for (const [k, v] of [
  ['--mib', MIB],
  ['--large', LARGE],
  ['--small', SMALL],
  ['--part-mib', PART_MIB],
] as const)
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${k}: a whole number, 1 or more`);

const VIGIL = fileURLToPath(new URL('../bin/vigil.js', import.meta.url));
/** Where the baseline puts its copy on both app machines. */
const BASELINE_DIR = '/var/lib/vigil/bench-rsync';
/** The baseline's SSH key and known_hosts on the active machine. */
const BENCH_SSH_DIR = '/root/.vigil-bench-airgap';
const KEY_COMMENT = 'vigil-bench-airgap-import';

const t0 = performance.now();
const say = (line: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

// Clean-up, newest first, each step once, on every exit path (an error, Ctrl-C, a kill).
const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const c = cleanups.pop()!;
      try {
        await c.fn();
      } catch (err) {
        console.error(`clean-up: ${c.what} failed: ${(err as Error).message}`);
      }
    }
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    say(`${sig}: cleaning up`);
    void cleanUp().then(() => process.exit(130));
  });

/** Free bytes on the filesystem holding `path`. */
async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

interface SourceFile {
  rel: string;
  bytes: number;
}

/** A few large files (90% of the bytes, sizes 1:2:3...) and many small ones (the rest, 1 to ~100 KiB), all random. */
async function makeSource(root: string): Promise<SourceFile[]> {
  const total = MIB * 2 ** 20;
  const largeTotal = Math.floor(total * 0.9);
  const weights = Array.from({ length: LARGE }, (_, i) => i + 1);
  const wsum = weights.reduce((a, b) => a + b, 0);
  const files: SourceFile[] = weights.map((w, i) => ({ rel: `binaries/patch-${i + 1}.bin`, bytes: Math.floor((largeTotal * w) / wsum) }));
  const smallTotal = total - files.reduce((a, f) => a + f.bytes, 0);
  const avg = smallTotal / SMALL;
  let left = smallTotal;
  for (let i = 0; i < SMALL; i++) {
    const bytes = i === SMALL - 1 ? Math.max(1, left) : Math.max(1, Math.min(left - (SMALL - 1 - i), Math.round(avg * (0.1 + 1.8 * Math.random()))));
    left -= bytes;
    files.push({ rel: `catalog/d${String(Math.floor(i / 100)).padStart(3, '0')}/kb${String(i).padStart(6, '0')}.dat`, bytes });
  }
  const block = Buffer.alloc(2 ** 20);
  let written = 0;
  let lastSaid = performance.now();
  for (const f of files) {
    const path = join(root, f.rel);
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(path, 'w');
    try {
      for (let left = f.bytes; left > 0; left -= block.length) {
        const n = Math.min(left, block.length);
        randomFillSync(block, 0, n);
        await fh.write(block, 0, n);
        written += n;
        if (performance.now() - lastSaid > 5000) {
          say(`  generating: ${mib(written)} of ${mib(total)}`);
          lastSaid = performance.now();
        }
      }
    } finally {
      await fh.close();
    }
  }
  return files;
}

/** Runs the checkout's `vigil` with its output as progress lines; resolves with the exit status and each line's time. */
function vigil(args: string[], echo: boolean): Promise<{ code: number; lines: { atMs: number; text: string }[] }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VIGIL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push({ what: `stopping vigil ${args[0]} ${args[1]}`, fn: async () => void (child.exitCode === null && child.kill('SIGTERM')) });
    const lines: { atMs: number; text: string }[] = [];
    const onData = (buf: { rest: string }) => (d: Buffer) => {
      const parts = (buf.rest + d.toString()).split('\n');
      buf.rest = parts.pop()!;
      for (const text of parts) {
        lines.push({ atMs: performance.now(), text });
        if (echo) say(`  | ${text}`);
      }
    };
    child.stdout.on('data', onData({ rest: '' }));
    child.stderr.on('data', onData({ rest: '' }));
    child.on('close', (code) => resolve({ code: code ?? 1, lines }));
  });
}

/** Whether every file is in `dir` at its size (a stat per file, from this host). */
async function holdsAll(dir: string, files: SourceFile[]): Promise<boolean> {
  for (const f of files) {
    const st = await stat(join(dir, f.rel)).catch(() => null);
    if (st?.size !== f.bytes) return false;
  }
  return true;
}

interface VigilRun {
  phases: [string, number][];
  totalToFilesMs: number;
  totalToStatusMs: number;
}

/** `vigil airgap import`, then polls until the standby holds the set (by size) and the status says every app machine matches. */
async function timeImport(lab: LabHandle, bundle: string, trust: string, standby: string, files: SourceFile[]): Promise<VigilRun> {
  const start = performance.now();
  const r = await vigil(['airgap', 'import', bundle, '--trust', trust, '--lab'], true);
  const exitAt = performance.now();
  if (r.code !== 0) throw new Error(`vigil airgap import exited ${r.code}`);
  const at = (re: RegExp) => {
    const l = r.lines.find((x) => re.test(x.text));
    if (!l) throw new Error(`vigil airgap import printed no line matching ${re}`);
    return l.atMs;
  };
  const backupFrom = at(/^backing up database /);
  const backupTo = at(/^backup written: /);
  const copied = at(/^copied /);
  const standbyDir = hostPathOf(standby, lab.cluster.application.patchDir!);
  let filesAt: number | undefined;
  let statusAt: number | undefined;
  let lastSaid = performance.now();
  let last = '';
  await withOps(LAB_OPS, async (ctx) => {
    while (filesAt === undefined || statusAt === undefined) {
      if (performance.now() - exitAt > 20 * 60_000) throw new Error(`not converged 20 min after the import; the status last said: ${last}`);
      if (filesAt === undefined && (await holdsAll(standbyDir, files))) {
        filesAt = performance.now();
        say(`  ${standby} holds every file at its size`);
      }
      if (statusAt === undefined) {
        const s = (await clusterStatus(ctx, 0)).airgap;
        last = JSON.stringify(s?.machines.map((m) => [m.name, m.state?.sequence ?? null, m.current]));
        if (s?.converged) {
          statusAt = performance.now();
          say('  vigil airgap status: every app machine holds the last bundle');
        }
      }
      if (performance.now() - lastSaid > 10_000) {
        say(`  waiting for the standby: status ${last}`);
        lastSaid = performance.now();
      }
      await sleep(250);
    }
  });
  return {
    phases: [
      ['verify (this host)', backupFrom - start],
      ['backup (pg_dump on the primary)', backupTo - backupFrom],
      ['copy to the active machine', copied - backupTo],
      ['import on the active machine (verify again, swap)', exitAt - copied],
      ['replication to the standby: every file at its size', filesAt! - exitAt],
      ['  ... and `vigil airgap status` converged', statusAt! - exitAt],
    ],
    totalToFilesMs: filesAt! - start,
    totalToStatusMs: statusAt! - start,
  };
}

/** `ssh` options for the baseline: this run's key, the lab's pinned host keys, no prompt. */
const sshCommand = (key: string, knownHosts: string, port: number) =>
  `ssh -i ${key} -p ${port} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${knownHosts}`;

/** Authorises this run's key for root on a machine; the clean-up takes the line out again. */
async function authorise(machine: string, pubLine: string): Promise<void> {
  const dir = hostPathOf(machine, '/root/.ssh');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'authorized_keys');
  cleanups.push({
    what: `removing the bench key from ${machine}:/root/.ssh/authorized_keys`,
    fn: async () => {
      const text = await readFile(file, 'utf8').catch(() => '');
      await writeFile(
        file,
        text
          .split('\n')
          .filter((l) => !l.endsWith(KEY_COMMENT))
          .join('\n'),
      );
    },
  });
  await appendFile(file, `${pubLine}\n`, { mode: 0o600 });
}

/** The baseline: rsync -a from this host to the active machine, then from there to the standby, both over sshd. */
async function timeRsync(work: string, src: string, active: Machine, standby: Machine, files: SourceFile[]): Promise<[number, number]> {
  const key = join(work, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', KEY_COMMENT, '-f', key]);
  const pub = (await readFile(`${key}.pub`, 'utf8')).trim();
  const knownHosts = join(LAB_DIR, 'known_hosts');
  for (const m of [active, standby]) {
    cleanups.push({ what: `removing ${m.name}:${BASELINE_DIR}`, fn: () => rm(hostPathOf(m.name, BASELINE_DIR), { recursive: true, force: true }) });
    await rm(hostPathOf(m.name, BASELINE_DIR), { recursive: true, force: true });
    await authorise(m.name, pub);
  }
  // The active machine's own copy of the key, and the standby's pinned host key, for the second leg.
  const onActive = hostPathOf(active.name, BENCH_SSH_DIR);
  cleanups.push({ what: `removing ${active.name}:${BENCH_SSH_DIR}`, fn: () => rm(onActive, { recursive: true, force: true }) });
  await mkdir(onActive, { recursive: true, mode: 0o700 });
  await writeFile(join(onActive, 'id_ed25519'), await readFile(key), { mode: 0o600 });
  const standbyHost = (await readFile(knownHosts, 'utf8'))
    .split('\n')
    .filter((l) => l.split(' ')[0] === standby.address || l.startsWith(`[${standby.address}]:`));
  await writeFile(join(onActive, 'known_hosts'), `${standbyHost.join('\n')}\n`);

  say(`baseline: rsync -a from this host to ${active.name}:${BASELINE_DIR} over ssh`);
  const a0 = performance.now();
  await run('rsync', ['-a', '-e', sshCommand(key, knownHosts, active.sshPort), `${src}/`, `root@${active.address}:${BASELINE_DIR}/`], { timeoutMs: 3_600_000 });
  const first = performance.now() - a0;
  if (!(await holdsAll(hostPathOf(active.name, BASELINE_DIR), files))) throw new Error(`rsync to ${active.name} exited 0 but not every file is there`);
  say(`baseline: rsync -a from ${active.name} to ${standby.name}:${BASELINE_DIR} over ssh (run on ${active.name})`);
  const b0 = performance.now();
  const r = await new LabShell(active.name).exec(
    [
      'rsync',
      '-a',
      '-e',
      sshCommand(`${BENCH_SSH_DIR}/id_ed25519`, `${BENCH_SSH_DIR}/known_hosts`, standby.sshPort),
      `${BASELINE_DIR}/`,
      `root@${standby.address}:${BASELINE_DIR}/`,
    ],
    { timeoutMs: 3_600_000 },
  );
  const second = performance.now() - b0;
  if (r.code !== 0) throw new Error(`rsync on ${active.name} to ${standby.name} exited ${r.code}: ${r.stderr.trim()}`);
  if (!(await holdsAll(hostPathOf(standby.name, BASELINE_DIR), files))) throw new Error(`rsync to ${standby.name} exited 0 but not every file is there`);
  return [first, second];
}

try {
  const needed = MIB * 2 ** 20;
  const [freeTmp, freeLab] = [await freeBytes(tmpdir()), await freeBytes(dirname(LAB_DIR))];
  say(`free space: ${mib(freeTmp)} under ${tmpdir()}, ${mib(freeLab)} under ${dirname(LAB_DIR)}`);
  // Here: the source and the bundle. On the lab machines: the copy, the staged set, the set, the previous set, the baseline's two copies.
  if (freeTmp < 2.2 * needed || freeLab < 6.5 * needed)
    throw new Error(
      `not enough free space for ${MIB} MiB: this run needs ~${mib(2.2 * needed)} under ${tmpdir()} and ~${mib(6.5 * needed)} under ${dirname(LAB_DIR)}`,
    );

  let lab: LabHandle;
  if (await readState()) {
    lab = await openLab();
    say(`using the running lab ${LAB_ID} (${lab.state.shape.topology}); it stays up`);
  } else {
    say(`lab ${LAB_ID}: bringing up ${TOPOLOGY} (taken down at the end)`);
    cleanups.push({ what: 'lab down', fn: () => labDown((l) => say(`lab down: ${l}`)) });
    lab = await labUp({ topology: TOPOLOGY }, (l) => say(`lab: ${l}`));
  }
  if (!lab.cluster.application.patchDir) throw new Error('the lab has no application.patchDir: bring up a lab of this checkout');
  await labSettled(lab);
  const agents = await labAgents(2000);
  const activeName = [...agents].find(([, s]) => s?.active)?.[0];
  const apps = lab.cluster.machines.filter((m) => m.roles.includes('app'));
  const active = apps.find((m) => m.name === activeName);
  const standby = apps.find((m) => m.name !== activeName);
  if (!active || !standby || apps.length !== 2)
    throw new Error(`expected two app machines, one active; saw ${apps.map((m) => m.name).join(', ')}, active ${activeName}`);
  say(`${active.name} active, ${standby.name} standby; patch directory ${lab.cluster.application.patchDir}`);

  const work = await mkdtemp(join(tmpdir(), 'vigil-bench-airgap-import-'));
  cleanups.push({ what: `removing ${work}`, fn: () => rm(work, { recursive: true, force: true }) });
  const src = join(work, 'src');
  say(`generating ~${MIB} MiB of random files in ${src}: ${LARGE} large, ${SMALL} small`);
  const g0 = performance.now();
  const files = await makeSource(src);
  const bytes = files.reduce((a, f) => a + f.bytes, 0);
  const large = files.slice(0, LARGE);
  say(`generated ${files.length} files, ${bytes} bytes (${mib(bytes)}) in ${secs(performance.now() - g0)}`);

  const key = join(work, 'airgap.key');
  const trust = join(work, 'airgap-trust.json');
  const k = await vigil(['airgap', 'keys', 'init', '--key', key, '--trust', trust], true);
  if (k.code !== 0) throw new Error(`vigil airgap keys init exited ${k.code}`);
  // A bundle above the cluster's last import, so a lab that imported before takes it.
  const record = await withOps(LAB_OPS, (ctx) => ctx.store.getAirgap({ timeoutMs: 5000 }));
  const sequence = (record?.record.sequence ?? 0) + 1;
  const bundle = join(work, 'bundle');
  say(`bundling (vigil airgap bundle, parts of ${PART_MIB} MiB, sequence ${sequence})`);
  const b0 = performance.now();
  const b = await vigil(['airgap', 'bundle', src, '--key', key, '--out', bundle, '--max-part-size', `${PART_MIB}M`, '--sequence', String(sequence)], true);
  if (b.code !== 0) throw new Error(`vigil airgap bundle exited ${b.code}`);
  const bundleMs = performance.now() - b0;

  say(`vigil: importing into the cluster (vigil airgap import ${bundle} --trust ${trust} --lab)`);
  const v = await timeImport(lab, bundle, trust, standby.name, files);
  const [leg1, leg2] = await timeRsync(work, src, active, standby, files);

  const w = Math.max(...v.phases.map(([n]) => n.length), 52);
  console.log(
    `\n## ${TOPOLOGY} lab ${LAB_ID}: ${files.length} files, ${mib(bytes)} (${large.map((f) => mib(f.bytes)).join(' + ')} in ${LARGE} large files, ${mib(bytes - large.reduce((a, f) => a + f.bytes, 0))} in ${SMALL} small ones), random bytes`,
  );
  console.log(
    `command: VIGIL_LAB_ID=${LAB_ID} npx tsx bench/airgap-import.ts --mib ${MIB} --large ${LARGE} --small ${SMALL} --part-mib ${PART_MIB} --topology ${TOPOLOGY}`,
  );
  console.log(
    `(outside, not in the totals: vigil airgap bundle ${secs(bundleMs)}, ${(await readdir(bundle)).filter((n) => n.startsWith('part-')).length} part(s) of at most ${PART_MIB} MiB)`,
  );
  console.log(`\nvigil airgap import, until both app machines hold the set`);
  for (const [name, ms] of v.phases) console.log(`  ${name.padEnd(w)} ${secs(ms).padStart(8)}`);
  console.log(`  ${'total, to every file on the standby'.padEnd(w)} ${secs(v.totalToFilesMs).padStart(8)}`);
  console.log(`  ${'total, to `vigil airgap status` converged'.padEnd(w)} ${secs(v.totalToStatusMs).padStart(8)}`);
  console.log(`\nbaseline: plain rsync -a over ssh, by hand`);
  console.log(`  ${`this host -> ${active.name}`.padEnd(w)} ${secs(leg1).padStart(8)}`);
  console.log(`  ${`${active.name} -> ${standby.name}`.padEnd(w)} ${secs(leg2).padStart(8)}`);
  console.log(`  ${'total'.padEnd(w)} ${secs(leg1 + leg2).padStart(8)}`);
  console.log(`\nratio (vigil to every file on the standby / rsync): ${(v.totalToFilesMs / (leg1 + leg2)).toFixed(2)}`);
} catch (err) {
  process.exitCode = 1;
  console.error(`bench/airgap-import.ts: ${(err as Error).stack ?? String(err)}`);
} finally {
  say('cleaning up');
  await cleanUp();
  say('done');
}
