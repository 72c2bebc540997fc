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
 *   npx tsx bench/apply.ts [--topology distributed|pair] [--rounds 1]
 */
import { parseArgs } from 'node:util';
import { labUpBare } from '../src/lab/bare.ts';
import { labDown, labUp } from '../src/lab/lab.ts';
import { LAB_DIR, clusterFilePath } from '../src/lab/paths.ts';
import type { LabTopology } from '../src/lab/topology.ts';
import { vigil } from '../test/lab/run-vigil.ts';

const { values } = parseArgs({ options: { topology: { type: 'string', default: 'distributed' }, rounds: { type: 'string', default: '1' } } });
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
  return { bare, init, apply, again, baseline };
}

const results: Round[] = [];
for (let i = 0; i < rounds; i++) {
  const r = await round();
  results.push(r);
  console.log(
    `round ${i + 1}: bare lab ${r.bare.toFixed(1)} s, init ${r.init.toFixed(1)} s, apply ${r.apply.toFixed(1)} s, second apply ${r.again.toFixed(1)} s; baseline lab up ${r.baseline.toFixed(1)} s`,
  );
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pick = (k: keyof Round) => median(results.map((r) => r[k])).toFixed(1);
console.log(`\n${topology}, ${rounds} round(s), medians:`);
console.log('| what | seconds |\n|---|---|');
console.log(`| \`vigil lab up --bare\`: machines booted (systemd, sshd), the mirror served | ${pick('bare')} |`);
console.log(`| init: cluster files, CA, host keys pinned, admin key installed | ${pick('init')} |`);
console.log(`| apply: bare machines to a verified cluster, packages installed with apt | ${pick('apply')} |`);
console.log(`| init + apply | ${median(results.map((r) => r.init + r.apply)).toFixed(1)} |`);
console.log(`| second apply (no change) | ${pick('again')} |`);
console.log(`| baseline: \`vigil lab up\` (machines booted with the packages installed, apply without SSH) | ${pick('baseline')} |`);
