/**
 * Bare machines to a verified cluster, measured on the lab:
 *
 * 1. Vigil: `vigil lab up --bare` (Debian 13 machines booting systemd, with sshd, sudo and apt
 *    only), `vigil init --answers` (cluster file, CA, host keys pinned, admin key installed with
 *    the root password once), `vigil apply` (all of it over SSH: preflight, PostgreSQL, Patroni,
 *    etcd, HAProxy and nginx installed with apt from the lab's mirror, the packages' own services
 *    disabled, the artifact with Node.js, files, certificates, keys, units under the machines'
 *    systemd, every tier started and the application answering through the proxy), then a second
 *    `vigil apply` that must find nothing to change.
 * 2. Baseline, in the same process: `vigil lab up` of the same topology: machines booted from the
 *    release's full root filesystem (the packages already installed), then the same apply code
 *    through each machine's lab shell instead of SSH: what is left without SSH and without the
 *    package installation (the components' own start: etcd, Patroni bootstrapping PostgreSQL, a
 *    synchronous standby, the application).
 *
 * The seed's own figure is "hours of prompts"; DESIGN.md's target is "one command, minutes".
 * Package installation is in apply's figure; the download is from the lab's mirror on the bridge
 * (a site's own mirror is in the same place), not from the internet.
 *
 * 3. With --offline, beside it (issue 17 §3): bare machines again, `vigil airgap fetch` of the
 *    `@vigil` package set from the lab's mirror (the internet side) and `vigil airgap bundle`
 *    (the outside machine's work, timed apart), then the mirror stopped and the machines' package
 *    lists removed, and `vigil apply --offline BUNDLE`: the same apply, its packages from the
 *    bundle (verified, copied to each machine, installed from a staged local repository).
 *
 *   npx tsx bench/apply.ts [--topology distributed|pair] [--rounds 1] [--offline]
 */
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { labUpBare } from '../src/lab/bare.ts';
import { labDown, labRun, labUp, openLab } from '../src/lab/lab.ts';
import { MIRROR_PORT, stopMirror } from '../src/lab/mirror.ts';
import { LAB_DIR, clusterFilePath } from '../src/lab/paths.ts';
import { DEFAULT_RELEASE, RELEASE_INFO, requireRootfs } from '../src/lab/rootfs.ts';
import { BRIDGE_ADDRESS, type LabTopology } from '../src/lab/topology.ts';
import { vigil } from '../test/lab/run-vigil.ts';

const { values } = parseArgs({
  options: { topology: { type: 'string', default: 'distributed' }, rounds: { type: 'string', default: '1' }, offline: { type: 'boolean', default: false } },
});
const topology = values.topology as LabTopology;
const rounds = Number(values.rounds);

const seconds = (t0: number) => (performance.now() - t0) / 1000;

async function must(args: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await vigil(args);
  if (r.code !== 0) throw new Error(`vigil ${args.join(' ')} failed:\n${r.out}`);
  return seconds(t0);
}

interface Round {
  bare: number;
  init: number;
  apply: number;
  again: number;
  baseline: number;
  /** --offline: fetch and bundle (outside), then apply --offline with no mirror. */
  outside?: number;
  offline?: number;
}

/** Bare machines, init, the package set fetched and bundled, the mirror stopped, apply --offline. */
async function offlineRound(): Promise<{ outside: number; offline: number }> {
  await labDown();
  const answers = await labUpBare({ topology }, () => {});
  await must(['init', '--answers', answers, '--accept-host-keys', '-d', LAB_DIR]);
  const air = await mkdtemp(join(tmpdir(), 'vigil-bench-offline-'));
  try {
    await copyFile(join(requireRootfs(DEFAULT_RELEASE, 'bare'), 'var/lib/dpkg/status'), join(air, 'bare-status'));
    await writeFile(
      join(air, 'sources.txt'),
      `deb http://${BRIDGE_ADDRESS}:${MIRROR_PORT}/ release=debian/${RELEASE_INFO[DEFAULT_RELEASE].debian} packages=@vigil base=bare-status\n`,
    );
    await must(['airgap', 'keys', 'init', '--key', join(air, 'k.key'), '--trust', join(air, 'trust.json')]);
    const t0 = performance.now();
    await must(['airgap', 'fetch', '--sources', join(air, 'sources.txt'), '--out', join(air, 'fetched')]);
    await must(['airgap', 'bundle', join(air, 'fetched'), '--key', join(air, 'k.key'), '--out', join(air, 'bundle')]);
    const outside = seconds(t0);
    await stopMirror();
    for (const m of (await openLab()).cluster.machines) await labRun(m.name, ['sh', '-c', 'rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin']);
    const offline = await must(['apply', '-c', clusterFilePath(), '--offline', join(air, 'bundle'), '--trust', join(air, 'trust.json')]);
    return { outside, offline };
  } finally {
    await labDown();
    await rm(air, { recursive: true, force: true });
  }
}

async function round(): Promise<Round> {
  await labDown();
  let t0 = performance.now();
  const answers = await labUpBare({ topology }, () => {});
  const bare = seconds(t0);
  const init = await must(['init', '--answers', answers, '--accept-host-keys', '-d', LAB_DIR]);
  const apply = await must(['apply', '-c', clusterFilePath()]);
  const again = await must(['apply', '-c', clusterFilePath()]);
  await labDown();
  t0 = performance.now();
  await labUp({ topology });
  const baseline = seconds(t0);
  await labDown();
  return { bare, init, apply, again, baseline, ...(values.offline ? await offlineRound() : {}) };
}

const results: Round[] = [];
for (let i = 0; i < rounds; i++) {
  const r = await round();
  results.push(r);
  console.log(
    `round ${i + 1}: bare lab ${r.bare.toFixed(1)} s, init ${r.init.toFixed(1)} s, apply ${r.apply.toFixed(1)} s, second apply ${r.again.toFixed(1)} s; baseline lab up ${r.baseline.toFixed(1)} s` +
      (r.offline === undefined ? '' : `; offline: fetch + bundle ${r.outside!.toFixed(1)} s, apply --offline ${r.offline.toFixed(1)} s`),
  );
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pick = (k: keyof Round) => median(results.map((r) => r[k] ?? NaN)).toFixed(1);
console.log(`\n${topology}, ${rounds} round(s), medians:`);
console.log('| what | seconds |\n|---|---|');
console.log(`| \`vigil lab up --bare\`: machines booted (systemd, sshd), the mirror served | ${pick('bare')} |`);
console.log(`| init: cluster files, CA, host keys pinned, admin key installed | ${pick('init')} |`);
console.log(`| apply: bare machines to a verified cluster, packages installed with apt | ${pick('apply')} |`);
console.log(`| init + apply | ${median(results.map((r) => r.init + r.apply)).toFixed(1)} |`);
console.log(`| second apply (no change) | ${pick('again')} |`);
console.log(`| baseline: \`vigil lab up\` (machines booted with the packages installed, apply without SSH) | ${pick('baseline')} |`);
if (values.offline) {
  console.log(`| outside: \`vigil airgap fetch\` of the @vigil package set from the mirror and \`vigil airgap bundle\` | ${pick('outside')} |`);
  console.log(`| \`vigil apply --offline BUNDLE\`: bare machines to a verified cluster, no mirror reachable, packages from the bundle | ${pick('offline')} |`);
}
