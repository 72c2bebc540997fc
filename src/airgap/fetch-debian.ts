/**
 * A sources file's `deb` line: a Debian package set, fetched into a local flat repository that
 * `vigil apply --offline BUNDLE` installs from (src/apply/offline.ts).
 *
 *   deb http://deb.debian.org/debian suite=trixie release=debian/13 packages=@vigil base=bare-status keyring=/usr/share/keyrings/debian-archive-keyring.pgp
 *   deb http://10.213.0.1:3142/ release=debian/13 packages=@vigil base=bare-status            (a flat repository: suite=./)
 *
 * What is verified: the index (Packages.gz, else Packages) against the SHA-256 the repository's
 * InRelease lists for it, and InRelease's signature with gpgv against `keyring=` when one is given
 * (then an InRelease is required); every .deb against the SHA-256 the index lists for it. Without
 * a keyring the index is checked only against an unsigned InRelease, or not at all when the
 * repository has none (a flat mirror): fetch says which, and records it in vigil-repo.json.
 *
 * The closure is resolved by debian.ts against `base=` (a dpkg status file of a bare machine of
 * the release: /var/lib/dpkg/status) or, without one, the index's Priority: required packages. The
 * directory gets the closure's .debs, a `Packages` index generated here from the upstream index's
 * stanzas of exactly those files (each .deb's control data as the repository published it, its
 * SHA-256 verified on download, with Filename pointing beside it: no .deb is parsed and no tool
 * is needed), and vigil-repo.json. A .deb of an earlier fetch that the closure no longer has is
 * removed.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { VigilError, problem, type Problem } from '../util/errors.ts';
import { run } from '../util/exec.ts';
import { debFileName, installedStanzas, localIndex, parseControl, releaseSha256, resolveClosure, REPO_FILE, type RepoInfo } from './debian.ts';
import { fetchError, fetchOne, get, type FetchedFile, type FetchOptions, type Source } from './fetch.ts';
import { formatBytes, unsafePath } from './format.ts';

export interface DebSet {
  /** `debian/13`. */
  release: string;
  arch: string;
  /** `./` for a flat repository, else a suite or codename under dists/. */
  suite: string;
  component: string;
  packages: string[];
  /** Absolute path of a bare machine's dpkg status file, or undefined. */
  base?: string;
  /** Absolute path of the keyring InRelease is checked with, or undefined. */
  keyring?: string;
}

const DEB_FIELDS = ['release', 'arch', 'suite', 'component', 'packages', 'base', 'keyring', 'path'];

/**
 * A package list's names, with groups (`@vigil`: every package `vigil apply` may install on the
 * release; the caller passes the groups in, as airgap/ does not know apply's packages) expanded.
 */
export function expandPackages(list: string[], release: string, groups: PackageGroups = {}): string[] | string {
  const out = new Set<string>();
  for (const p of list) {
    if (p.startsWith('@')) {
      const g = groups[p]?.(release);
      if (!g) return `${p} is not a group this Vigil knows for ${release}${Object.keys(groups).length ? ` (groups: ${Object.keys(groups).join(', ')})` : ''}`;
      for (const q of g) out.add(q);
    } else if (/^[a-z0-9][a-z0-9+.-]+$/.test(p)) out.add(p);
    else return `${JSON.stringify(p)} is not a package name`;
  }
  return [...out].sort();
}

/** Named package lists for a release (`@vigil`), or undefined where the group has none for it. */
export type PackageGroups = Record<string, (release: string) => string[] | undefined>;

/** The fields of a `deb` line (after the word `deb`); problems go to `problems`. */
export function parseDebLine(words: string[], file: string, line: number, problems: Problem[]): (Source & { deb: DebSet }) | null {
  const where = (field: string) => `${file}:${line} ${field}`;
  const before = problems.length;
  const [first, ...rest] = words;
  let url: URL | undefined;
  try {
    url = new URL(first ?? '');
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push(problem(where('url'), `${url.protocol} is not supported`, 'give the repository as an http:// or https:// URL'));
    } else if (url.username || url.password) {
      problems.push(problem(where('url'), 'carries a user name or password', 'remove the credentials from the URL; a sources file holds no secret'));
    }
  } catch {
    problems.push(problem(where('url'), `${JSON.stringify(first ?? '')} is not a URL`, 'write `deb URL release=debian/13 packages=...`'));
  }
  const fields = new Map<string, string>();
  for (const r of rest) {
    const eq = r.indexOf('=');
    const key = eq < 0 ? r : r.slice(0, eq);
    if (eq < 0 || !DEB_FIELDS.includes(key)) {
      problems.push(problem(where(key), `${JSON.stringify(r)} is not a field of a deb line`, `write fields as ${DEB_FIELDS.map((f) => `${f}=...`).join(' ')}`));
      continue;
    }
    if (fields.has(key)) problems.push(problem(where(key), 'is given twice', 'keep one'));
    fields.set(key, r.slice(eq + 1));
  }
  const release = fields.get('release') ?? '';
  if (!/^[a-z]+\/[0-9.]+$/.test(release))
    problems.push(
      problem(
        where('release'),
        release ? `${JSON.stringify(release)} is not ID/VERSION_ID` : 'is missing',
        "give the machines' release as in /etc/os-release: release=debian/13",
      ),
    );
  const arch = fields.get('arch') ?? 'amd64';
  if (!/^[a-z0-9]+$/.test(arch)) problems.push(problem(where('arch'), `${JSON.stringify(arch)} is not a Debian architecture`, 'e.g. arch=amd64 or arch=arm64'));
  const suite = fields.get('suite') ?? './';
  if (suite !== './' && !/^[a-z0-9][a-z0-9.-]*$/.test(suite))
    problems.push(problem(where('suite'), `${JSON.stringify(suite)} is not a suite`, 'give the suite or codename (suite=trixie), or ./ for a flat repository'));
  const component = fields.get('component') ?? 'main';
  if (!/^[a-z0-9-]+$/.test(component)) problems.push(problem(where('component'), `${JSON.stringify(component)} is not a component`, 'e.g. component=main'));
  let packages: string[] = [];
  if (!fields.get('packages'))
    problems.push(problem(where('packages'), 'is missing', 'list the packages: packages=@vigil (what apply installs) or packages=a,b,c'));
  else {
    packages = fields.get('packages')!.split(',');
    const bad = packages.find((p) => !/^@?[a-z0-9][a-z0-9+.-]+$/.test(p));
    if (bad !== undefined)
      problems.push(problem(where('packages'), `${JSON.stringify(bad)} is not a package name`, 'give package names separated by commas, or @vigil'));
  }
  const rel = (f: string) => (fields.has(f) ? resolve(dirname(file), fields.get(f)!) : undefined);
  const path = fields.get('path') ?? release.replace('/', '-');
  const why = unsafePath(path);
  if (why) problems.push(problem(where('path'), `${JSON.stringify(path)} ${why}`, 'give path=DIR, relative, inside the output directory'));
  if (problems.length > before || !url) return null;
  return { line, url, path, deb: { release, arch, suite, component, packages, base: rel('base'), keyring: rel('keyring') } };
}

/** GET into memory; undefined on 404. */
async function getBytes(url: URL, o: FetchOptions, where: string): Promise<Buffer | undefined> {
  const { res } = await get(url, {}, o);
  const status = res.statusCode ?? 0;
  if (status === 404) {
    res.resume();
    return undefined;
  }
  if (status !== 200) {
    res.resume();
    throw fetchError(where, `${url.href} answered HTTP ${status}`, 'check the repository URL and suite in the sources file', status >= 500);
  }
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The signed text of an InRelease, checked with gpgv against the keyring. */
async function gpgvVerify(inRelease: Buffer, keyring: string, where: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-inrelease-'));
  try {
    await writeFile(join(dir, 'InRelease'), inRelease);
    const r = await run('gpgv', ['--keyring', keyring, '--output', join(dir, 'signed'), join(dir, 'InRelease')], { allowFail: true });
    if (r.code !== 0)
      throw fetchError(
        where,
        `InRelease's signature does not verify with ${keyring}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`,
        'give the keyring of this repository (keyring=), or do not carry what it serves',
      );
    return await readFile(join(dir, 'signed'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(err instanceof VigilError))
      throw fetchError(where, 'gpgv is not installed', 'install gpgv (apt-get install gpgv), or leave keyring= out', false, err);
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The body of a clear-signed message, unverified (for an InRelease used without a keyring). */
function clearSignedBody(text: string): string {
  const m = /-----BEGIN PGP SIGNED MESSAGE-----\n(?:[^\n]+\n)*\n([\s\S]*?)\n-----BEGIN PGP SIGNATURE-----/.exec(text);
  return m ? m[1]!.replace(/^- /gm, '') : text;
}

/** Fetches a package set: the index (checked), the closure, each .deb (checked), the local index. */
export async function fetchDebian(s: Source & { deb: DebSet }, o: FetchOptions): Promise<FetchedFile[]> {
  const d = s.deb;
  const where = `${o.sourcesPath}:${s.line} deb ${s.url.href}`;
  const root = s.url.href.endsWith('/') ? s.url : new URL(`${s.url.href}/`);
  const flat = d.suite === './';
  const dists = flat ? root : new URL(`dists/${d.suite}/`, root);
  const indexDir = flat ? '' : `${d.component}/binary-${d.arch}/`;
  const say = (l: string) => o.progress?.(`${s.path}: ${l}`);

  let release: string | undefined;
  let indexCheck: RepoInfo['index'] = 'none';
  const inRelease = await getBytes(new URL('InRelease', dists), o, where);
  if (d.keyring) {
    if (!inRelease)
      throw fetchError(
        where,
        `has no InRelease at ${new URL('InRelease', dists).href}, so keyring= cannot verify it`,
        'check suite=, or leave keyring= out (the index is then not verified)',
      );
    release = await gpgvVerify(inRelease, d.keyring, where);
    indexCheck = 'signed';
  } else if (inRelease) {
    release = clearSignedBody(inRelease.toString('utf8'));
    indexCheck = 'release';
  }
  let index: string | undefined;
  for (const name of ['Packages.gz', 'Packages']) {
    const listed = release ? releaseSha256(release, `${indexDir}${name}`) : undefined;
    if (release && !listed) continue; // InRelease does not list it: not this one
    const bytes = await getBytes(new URL(`${indexDir}${name}`, dists), o, where);
    if (!bytes) continue;
    if (listed) {
      const got = createHash('sha256').update(bytes).digest('hex');
      if (got !== listed.sha256)
        throw fetchError(
          where,
          `${indexDir}${name} has SHA-256 ${got}; InRelease says ${listed.sha256}`,
          'run fetch again (a mirror mid-update); if it persists, do not carry what this repository serves',
          true,
        );
    }
    index = name.endsWith('.gz') ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8');
    break;
  }
  if (index === undefined)
    throw fetchError(
      where,
      `has no ${indexDir}Packages.gz or Packages${release ? ' listed in its InRelease' : ''}`,
      'check the URL, suite=, component= and arch=',
    );
  say(
    indexCheck === 'signed'
      ? `index verified: InRelease signed (checked with ${d.keyring}), the index's SHA-256 as it lists`
      : indexCheck === 'release'
        ? "index checked against the repository's InRelease, whose signature was NOT checked (give keyring= to check it)"
        : 'index NOT verified: the repository has no InRelease (each .deb is still checked against the index)',
  );

  let base = null;
  if (d.base) {
    try {
      base = installedStanzas(await readFile(d.base, 'utf8'));
    } catch (err) {
      throw new VigilError(
        'AIRGAP_SOURCES',
        [problem(`${o.sourcesPath}:${s.line} base`, `${d.base} cannot be read`, "copy a bare machine's /var/lib/dpkg/status there")],
        { cause: err },
      );
    }
    if (base.length === 0)
      throw new VigilError('AIRGAP_SOURCES', [
        problem(`${o.sourcesPath}:${s.line} base`, `${d.base} lists no installed package`, "give a bare machine's /var/lib/dpkg/status"),
      ]);
  }
  const wanted = expandPackages(d.packages, d.release, o.packageGroups);
  if (typeof wanted === 'string')
    throw new VigilError('AIRGAP_SOURCES', [problem(`${o.sourcesPath}:${s.line} packages`, wanted, 'list package names instead')]);
  const closure = resolveClosure(parseControl(index), wanted, d.arch, base);
  if (closure.missing.length)
    throw new VigilError(
      'AIRGAP_FETCH',
      closure.missing.map((m) =>
        problem(
          where,
          m.neededBy === '(wanted)' ? `has no package ${m.relation} for ${d.arch}` : `has nothing for ${m.relation}, which ${m.neededBy} depends on`,
          'check the package name, release=, suite= and arch=, or give base= (the status file of a bare machine of the release)',
        ),
      ),
    );
  const total = closure.packages.reduce((n, p) => n + Number(p.get('Size') ?? 0), 0);
  say(
    `${closure.packages.length} packages (${formatBytes(total)}) for ${wanted.length} asked, beyond ${d.base ? `the base in ${d.base}` : 'Priority: required'}`,
  );

  const out: FetchedFile[] = [];
  const wantedFiles = new Set<string>();
  for (const p of closure.packages) {
    const sha256 = p.get('SHA256');
    const file = debFileName(p);
    if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256))
      throw fetchError(where, `the index lists no SHA-256 for ${p.get('Package')}`, 'use a repository whose index has SHA256 fields');
    wantedFiles.add(file);
    out.push(
      await fetchOne(
        { line: s.line, url: new URL(p.get('Filename')!.split('/').map(encodeURIComponent).join('/'), root), sha256, path: `${s.path}/${file}` },
        o,
      ),
    );
  }
  const dir = join(o.out, s.path);
  await mkdir(dir, { recursive: true });
  for (const f of await readdir(dir)) if (f.endsWith('.deb') && !wantedFiles.has(f)) await rm(join(dir, f), { force: true });
  const packagesText = localIndex(closure.packages);
  await writeFile(join(dir, 'Packages'), packagesText);
  const info: RepoInfo = {
    format: 'vigil-airgap-debian/1',
    release: d.release,
    arch: d.arch,
    packages: wanted,
    source: `${root.href}${flat ? '' : ` ${d.suite} ${d.component}`}`,
    index: indexCheck,
    base: d.base ? 'status file' : 'Priority: required',
    count: closure.packages.length,
  };
  await writeFile(join(dir, REPO_FILE), `${JSON.stringify(info, null, 1)}\n`);
  for (const [name, text] of [
    ['Packages', packagesText],
    [REPO_FILE, `${JSON.stringify(info, null, 1)}\n`],
  ] as const)
    out.push({
      path: `${s.path}/${name}`,
      bytes: Buffer.byteLength(text),
      sha256: createHash('sha256').update(text).digest('hex'),
      outcome: 'written',
      verified: false,
    });
  return out;
}
