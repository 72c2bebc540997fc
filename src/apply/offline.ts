/**
 * `vigil apply --offline BUNDLE`: the packages come from a Debian package set the bundle carries
 * (a `deb` line of the sources file, src/airgap/fetch-debian.ts), never from a mirror.
 *
 * On the admin's machine, the bundle is verified as an import verifies it (src/airgap/verify.ts:
 * the signature by the trusted key, every part's and file's SHA-256, the expiry; the sequence is
 * not judged: apply may run before the cluster, and its etcd, exist), and only the verified bytes
 * of the package sets are kept, in apply's temporary directory. On each machine that misses a
 * package, apply then:
 *
 *   1. checks that the set for the machine's release has every missing package; apply does this
 *      for every machine before any machine installs anything (checkOffline), so a set that lacks
 *      a package stops apply, naming the packages and the bundle, with nothing installed anywhere;
 *   2. copies the set into a root-owned staging directory (OFFLINE_DIR) and checks every file's
 *      SHA-256 there against the verified one;
 *   3. runs apt with options that name only that directory as a source (`file:` with
 *      `[trusted=yes]`: the bundle's signature, checked above, covers the index and every .deb,
 *      and apt checks each .deb against the index) and keep package lists of its own there:
 *      /etc/apt and the machine's own lists are neither read for sources nor changed;
 *   4. simulates the install first (`apt-get install -s`): a dependency the set lacks stops it
 *      with apt's words and nothing installed; then installs;
 *   5. removes the staging directory, whatever happened.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import type { Machine } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';
import { VigilError, problem } from '../util/errors.ts';
import { parseControl, parseRelations, REPO_FILE, type RepoInfo } from '../airgap/debian.ts';
import { readTrust } from '../airgap/keys.ts';
import { verifyBundle, type FileSink } from '../airgap/verify.ts';

/** Where a machine's copy of the package set is staged for one install, then removed. */
export const OFFLINE_DIR = '/var/lib/vigil/offline-repo';

export interface OfflineRepo {
  /** Its directory inside the bundle. */
  path: string;
  /** The verified copy on the admin's machine. */
  local: string;
  info: RepoInfo;
  /** Package names the index offers, and names its packages provide. */
  offers: Set<string>;
  /** Files to copy (Packages first) with their SHA-256. */
  files: { name: string; sha256: string }[];
}

export interface OfflineSource {
  bundle: string;
  /** e.g. "bundle 3f… sequence 4". */
  label: string;
  repos: OfflineRepo[];
}

const secs = (t0: number) => ((performance.now() - t0) / 1000).toFixed(1);

const offlineError = (where: string, message: string, fix: string) => new VigilError('APPLY', [problem(where, message, fix)]);

/** Is this bundle file part of a package set (kept), or something else the bundle carries (only verified)? */
const keeps = (path: string) => /(^|\/)(Packages|vigil-repo\.json|[^/]+\.deb)$/.test(path);

/** Verifies the bundle and keeps its package sets' verified bytes under `workDir`. */
export async function openOfflineBundle(bundle: string, trustPath: string, workDir: string, progress: (line: string) => void): Promise<OfflineSource> {
  const { chain } = await readTrust(trustPath);
  const root = join(workDir, 'offline');
  const hashes = new Map<string, string>();
  const sink: FileSink = {
    async open(path) {
      if (!keeps(path)) return { write: async () => {}, close: async () => {} };
      const file = join(root, path);
      await mkdir(dirname(file), { recursive: true });
      const out = createWriteStream(file, { mode: 0o644 });
      const hash = createHash('sha256');
      return {
        write: (b: Buffer) =>
          new Promise<void>((resolve, reject) => {
            hash.update(b);
            out.write(b, (err) => (err ? reject(err) : resolve()));
          }),
        close: () =>
          new Promise<void>((resolve, reject) => {
            hashes.set(path, hash.digest('hex'));
            out.end((err?: Error | null) => (err ? reject(err) : resolve()));
          }),
      };
    },
  };
  const v = await verifyBundle(bundle, { trust: chain, trustSource: trustPath, sink, progress });
  const label = `bundle ${v.manifest.bundleId} sequence ${v.manifest.sequence}`;
  const repos: OfflineRepo[] = [];
  for (const f of v.manifest.files.filter((x) => basename(x.path) === REPO_FILE)) {
    const path = posix.dirname(f.path);
    const local = join(root, path);
    const info = JSON.parse(await readFile(join(local, REPO_FILE), 'utf8')) as RepoInfo;
    if (info.format !== 'vigil-airgap-debian/1' || typeof info.release !== 'string')
      throw offlineError(`${bundle} ${f.path}`, 'is not a package set this Vigil reads', 'fetch and bundle the package set with this version of Vigil');
    const index = parseControl(await readFile(join(local, 'Packages'), 'utf8').catch(() => ''));
    const offers = new Set<string>();
    for (const s of index) {
      offers.add(s.get('Package') ?? '');
      for (const g of parseRelations(s.get('Provides'))) for (const r of g) offers.add(r.name);
    }
    const inDir = (p: string) => posix.dirname(p) === path && keeps(p) && basename(p) !== REPO_FILE;
    const files = v.manifest.files
      .filter((x) => inDir(x.path))
      .map((x) => ({ name: basename(x.path), sha256: hashes.get(x.path) ?? x.sha256 }))
      .sort((a, b) => (a.name === 'Packages' ? -1 : b.name === 'Packages' ? 1 : a.name < b.name ? -1 : 1));
    if (!files.some((x) => x.name === 'Packages'))
      throw offlineError(`${bundle} ${path}`, 'has no Packages index', 'fetch the package set again (`vigil airgap fetch`) and bundle it');
    repos.push({ path, local, info, offers, files });
  }
  if (!repos.length)
    throw offlineError(
      bundle,
      `carries no package set (${label} has no ${REPO_FILE})`,
      'add a `deb` line to the sources file (docs/airgap.md), run `vigil airgap fetch` and `vigil airgap bundle` again',
    );
  progress(
    `offline: ${label} verified; package sets: ${repos.map((r) => `${r.path} (${r.info.release} ${r.info.arch}, ${r.info.count} packages)`).join(', ')}`,
  );
  return { bundle, label, repos };
}

/** The apt options of an offline run: the staged set is the only source, with lists of its own. */
export function offlineAptOptions(dir = OFFLINE_DIR): string[] {
  return [
    '-o',
    `Dir::Etc::sourcelist=${dir}/sources.list`,
    '-o',
    'Dir::Etc::sourceparts=-',
    '-o',
    `Dir::State::Lists=${dir}/lists`,
    '-o',
    'Dir::Cache::pkgcache=',
    '-o',
    'Dir::Cache::srcpkgcache=',
  ];
}

/** apt-get install of `pkgs` from the staged set only (`simulate`: -s, nothing changes). */
export function offlineInstallCommand(pkgs: string[], simulate = false): string[] {
  return [
    'env',
    'DEBIAN_FRONTEND=noninteractive',
    'apt-get',
    ...offlineAptOptions(),
    'install',
    ...(simulate ? ['-s'] : []),
    '-y',
    '-q',
    '--no-install-recommends',
    '-o',
    'Dpkg::Options::=--force-confold',
    ...pkgs,
  ];
}

/** The set for a machine's release, or the error that names what the bundle has instead. */
export function repoFor(src: OfflineSource, machine: string, release: string): OfflineRepo {
  const repo = src.repos.find((r) => r.info.release === release);
  if (!repo)
    throw offlineError(
      `${machine}, step packages`,
      `runs ${release}; the ${src.label} at ${src.bundle} carries package sets for ${src.repos.map((r) => r.info.release).join(', ')} only`,
      `add \`deb ... release=${release} ...\` to the sources file, fetch and bundle again`,
    );
  return repo;
}

/** The missing packages the set does not offer (by name or Provides). */
export function notInRepo(repo: OfflineRepo, pkgs: string[]): string[] {
  return pkgs.filter((p) => !repo.offers.has(p));
}

/** Why the bundle cannot install `missing` on a machine of `release` (no set for the release, or packages the set lacks), or null. */
export function offlineProblem(src: OfflineSource, machine: string, release: string, missing: string[]): VigilError | null {
  let repo: OfflineRepo;
  try {
    repo = repoFor(src, machine, release);
  } catch (err) {
    return err as VigilError;
  }
  const lacking = notInRepo(repo, missing);
  if (!lacking.length) return null;
  return offlineError(
    `${machine}, step packages`,
    `the ${src.label} at ${src.bundle} has no package ${lacking.join(', ')} for ${release} (its set ${repo.path} has ${repo.info.count} packages); nothing was installed`,
    `add ${lacking.join(',')} to packages= of the sources file's deb line, run \`vigil airgap fetch\` and \`vigil airgap bundle\` again, and apply the new bundle`,
  );
}

/** Installs `missing` on one machine from the staged set; the staging directory is removed after. */
export async function installOffline(
  shell: RemoteShell,
  m: Machine,
  src: OfflineSource,
  release: string,
  missing: string[],
  note: (line: string) => void = () => {},
): Promise<void> {
  const problem = offlineProblem(src, m.name, release, missing);
  if (problem) throw problem;
  const repo = repoFor(src, m.name, release);
  const where = `${m.name}, step packages`;
  const arch = (await shell.exec(['dpkg', '--print-architecture'])).stdout.trim();
  if (arch !== repo.info.arch)
    throw offlineError(where, `is ${arch}; the bundle's set ${repo.path} is for ${repo.info.arch}`, `fetch the set with arch=${arch} and bundle again`);
  const sh = async (argv: string[], what: string, timeoutMs = 60_000) => {
    const r = await shell.exec(argv, { timeoutMs });
    if (r.code !== 0)
      throw offlineError(
        where,
        `${what} failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(-4).join(' ')}`,
        `read the message; then run \`vigil apply --offline ${src.bundle}\` again`,
      );
    return r;
  };
  await sh(['sh', '-c', 'rm -rf -- "$1" && mkdir -p -m 0755 -- "$1" "$1/lists/partial"', 'vigil-offline', OFFLINE_DIR], `creating ${OFFLINE_DIR}`);
  try {
    let t0 = performance.now();
    let bytes = 0;
    for (const f of repo.files) {
      const content = await readFile(join(repo.local, f.name));
      bytes += content.length;
      await shell.writeFile(`${OFFLINE_DIR}/${f.name}`, content, { mode: 0o644, owner: 'root:root' });
    }
    // The copy on the machine, checked against the verified bytes before apt reads it.
    const sums = await sh(
      ['sh', '-c', 'cd -- "$1" && shift && sha256sum -- "$@"', 'vigil-offline', OFFLINE_DIR, ...repo.files.map((f) => f.name)],
      'checking the copied files',
    );
    const got = new Map(sums.stdout.split('\n').map((l) => [l.slice(66).trim(), l.slice(0, 64)]));
    const bad = repo.files.filter((f) => got.get(f.name) !== f.sha256).map((f) => f.name);
    if (bad.length)
      throw offlineError(
        where,
        `the copy of ${bad.join(', ')} in ${OFFLINE_DIR} differs from the verified bundle`,
        "check the machine's disk, and run apply again",
      );
    note(`${repo.files.length} files (${(bytes / 2 ** 20).toFixed(1)} MiB) of ${repo.path} copied to ${OFFLINE_DIR} and checked in ${secs(t0)} s`);
    t0 = performance.now();
    await shell.writeFile(
      `${OFFLINE_DIR}/sources.list`,
      `# vigil apply --offline: the ${src.label}'s package set, for this install only (removed after).\ndeb [trusted=yes] file:${OFFLINE_DIR} ./\n`,
      { mode: 0o644, owner: 'root:root' },
    );
    await sh(['apt-get', ...offlineAptOptions(), 'update', '-q'], 'apt-get update from the staged set');
    const sim = await shell.exec(offlineInstallCommand(missing, true), { timeoutMs: 120_000 });
    if (sim.code !== 0) {
      const said = (sim.stderr.trim() || sim.stdout.trim())
        .split('\n')
        .filter((l) => /^(E:|\s+\S+ : Depends)/.test(l) || / : (Depends|PreDepends|Breaks|Conflicts)/.test(l))
        .slice(0, 8)
        .join('; ');
      throw offlineError(
        where,
        `apt cannot install ${missing.join(' ')} from the ${src.label} at ${src.bundle}: ${said || `exit ${sim.code}`}; nothing was installed`,
        'the set lacks what apt names: add those packages to the deb line (or give base= the status file of a bare machine of this release), fetch and bundle again',
      );
    }
    note(`apt-get update and a simulated install from ${OFFLINE_DIR} only: ${secs(t0)} s`);
    t0 = performance.now();
    const r = await shell.exec(offlineInstallCommand(missing), { timeoutMs: 30 * 60_000 });
    if (r.code !== 0)
      throw offlineError(
        where,
        `installing ${missing.join(' ')} from the ${src.label} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
        `dpkg may have unpacked some of them: run \`dpkg --audit\` on ${m.name} to see which; then run \`vigil apply --offline ${src.bundle}\` again, which installs what is still missing`,
      );
    note(`installed in ${secs(t0)} s`);
  } finally {
    await shell.exec(['rm', '-rf', '--', OFFLINE_DIR]).catch(() => {});
  }
}
