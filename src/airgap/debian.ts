/**
 * Debian package sets for the air gap, the pure half: control stanzas (Packages indexes, dpkg's
 * status file, InRelease), Debian version comparison, dependency closure and the local
 * repository's index. The network half is in fetch.ts; apply's use of the repository in
 * src/apply/offline.ts.
 *
 * The closure is what `apt-get install --no-install-recommends PACKAGES` needs on a machine of the
 * release that has only its base installed: Pre-Depends and Depends, followed from the wanted
 * packages; an alternative (`a | b`) already satisfied by the base or by a package already chosen
 * wins, else the first one the index has; a virtual package is satisfied by a package that
 * Provides it; a versioned dependency that the base's version does not meet takes the index's
 * newest version that does. Recommends, Suggests, Conflicts and Breaks are not followed: apt
 * judges them when it installs, against the machine's own state, and refuses what it cannot do.
 */

/** One stanza: field names as written (case kept), values with continuation lines joined by "\n". */
export type Stanza = Map<string, string>;

/** Parses a control file (a Packages index, dpkg's status, a Release file's body) into stanzas. */
export function parseControl(text: string): Stanza[] {
  const out: Stanza[] = [];
  let cur: Stanza | null = null;
  let last: string | null = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      cur = null;
      last = null;
      continue;
    }
    if (/^[ \t]/.test(line)) {
      if (cur && last !== null) cur.set(last, `${cur.get(last)}\n${line}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (!cur) out.push((cur = new Map()));
    last = line.slice(0, colon);
    cur.set(last, line.slice(colon + 1).trim());
  }
  return out;
}

/** The index's text for stanzas (fields in their order), one blank line between. */
export function formatControl(stanzas: Stanza[]): string {
  return stanzas.map((s) => [...s].map(([k, v]) => `${k}: ${v}`).join('\n')).join('\n\n') + (stanzas.length ? '\n' : '');
}

/** Debian's ordering of non-digit characters: ~ before everything (even the end), letters before the rest. */
function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // The non-digit prefix, character by character.
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const ac = i < a.length && !/\d/.test(a[i]!) ? a[i] : undefined;
      const bc = j < b.length && !/\d/.test(b[j]!) ? b[j] : undefined;
      const d = order(ac) - order(bc);
      if (d !== 0) return d;
      i++;
      j++;
    }
    // Then the numeric prefix, as a number.
    let an = '';
    let bn = '';
    while (i < a.length && /\d/.test(a[i]!)) an += a[i++];
    while (j < b.length && /\d/.test(b[j]!)) bn += b[j++];
    const x = BigInt(an || '0');
    const y = BigInt(bn || '0');
    if (x !== y) return x > y ? 1 : -1;
  }
  return 0;
}

/** dpkg's version comparison (deb-version(7)): negative, 0 or positive. */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const colon = v.indexOf(':');
    const epoch = colon > 0 ? Number(v.slice(0, colon)) : 0;
    const rest = colon > 0 ? v.slice(colon + 1) : v;
    const dash = rest.lastIndexOf('-');
    return { epoch, upstream: dash >= 0 ? rest.slice(0, dash) : rest, revision: dash >= 0 ? rest.slice(dash + 1) : '' };
  };
  const x = split(a);
  const y = split(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  return compareFragment(x.upstream, y.upstream) || compareFragment(x.revision, y.revision);
}

export interface Relation {
  name: string;
  op?: '<<' | '<=' | '=' | '>=' | '>>';
  version?: string;
}

/** A Depends-like field: a list of alternatives lists. Architecture qualifiers (`:any`) are dropped. */
export function parseRelations(field: string | undefined): Relation[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((group) =>
      group
        .split('|')
        .map((alt) => {
          const m = /^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^\s)]+)\s*\))?/.exec(alt);
          if (!m) return null;
          const op = m[2] === '<' ? '<=' : m[2] === '>' ? '>=' : (m[2] as Relation['op']);
          return { name: m[1]!, ...(op ? { op, version: m[3]! } : {}) };
        })
        .filter((r): r is Relation => r !== null),
    )
    .filter((g) => g.length > 0);
}

export function satisfies(version: string, r: Relation): boolean {
  if (!r.op || r.version === undefined) return true;
  const c = compareVersions(version, r.version);
  switch (r.op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}

export const relationText = (r: Relation): string => (r.op ? `${r.name} (${r.op} ${r.version})` : r.name);

/** Packages by name, and what each name is provided by (with the provided version, if any). */
class PackageSet {
  readonly byName = new Map<string, Stanza[]>();
  readonly providers = new Map<string, { stanza: Stanza; version?: string }[]>();

  add(s: Stanza): void {
    const name = s.get('Package')!;
    this.byName.set(name, [...(this.byName.get(name) ?? []), s]);
    for (const group of parseRelations(s.get('Provides')))
      for (const p of group) this.providers.set(p.name, [...(this.providers.get(p.name) ?? []), { stanza: s, version: p.op === '=' ? p.version : undefined }]);
  }

  /** A package of this set meeting r: by name (newest first), or a provider (unversioned r, or a versioned Provides meeting it). */
  find(r: Relation): Stanza | undefined {
    const named = [...(this.byName.get(r.name) ?? [])]
      .sort((a, b) => compareVersions(b.get('Version')!, a.get('Version')!))
      .find((s) => satisfies(s.get('Version')!, r));
    if (named) return named;
    return this.providers.get(r.name)?.find((p) => (r.op ? p.version !== undefined && satisfies(p.version, r) : true))?.stanza;
  }
}

/** What a machine of the release already has: dpkg's status (installed packages), or null (then Priority: required). */
export function installedStanzas(status: string): Stanza[] {
  return parseControl(status).filter((s) => /^install ok installed$/.test(s.get('Status') ?? '') && s.has('Package') && s.has('Version'));
}

export interface Closure {
  /** The index stanzas to download, sorted by package name. */
  packages: Stanza[];
  /** Dependencies neither the base nor the index can meet, with the package that needs each. */
  missing: { relation: string; neededBy: string }[];
}

/**
 * The closure of `wanted` in `index` for `arch`, minus what `base` (installed stanzas of a bare
 * machine) already meets. Without a base, the index's Priority: required packages stand for it
 * (every Debian installation has them).
 */
export function resolveClosure(index: Stanza[], wanted: string[], arch: string, base: Stanza[] | null): Closure {
  const avail = new PackageSet();
  for (const s of index) {
    const a = s.get('Architecture');
    if (s.has('Package') && s.has('Version') && (a === arch || a === 'all')) avail.add(s);
  }
  const have = new PackageSet();
  for (const s of base ?? index.filter((x) => x.get('Priority') === 'required')) have.add(s);
  const chosen = new PackageSet();
  const picked = new Map<string, Stanza>();
  const missing: Closure['missing'] = [];
  const queue: { group: Relation[]; neededBy: string }[] = wanted.map((name) => ({ group: [{ name }], neededBy: '(wanted)' }));
  while (queue.length) {
    const { group, neededBy } = queue.shift()!;
    if (group.some((r) => chosen.find(r) || have.find(r))) continue;
    let pick: Stanza | undefined;
    for (const r of group) if ((pick = avail.find(r))) break;
    if (!pick) {
      missing.push({ relation: group.map(relationText).join(' | '), neededBy });
      continue;
    }
    const name = pick.get('Package')!;
    if (picked.has(name)) continue; // another version of it was chosen: apt will judge
    picked.set(name, pick);
    chosen.add(pick);
    for (const field of ['Pre-Depends', 'Depends']) for (const g of parseRelations(pick.get(field))) queue.push({ group: g, neededBy: name });
  }
  const packages = [...picked.values()].sort((a, b) => (a.get('Package')! < b.get('Package')! ? -1 : 1));
  return { packages, missing };
}

/** The local repository's index: each stanza with Filename pointing at the .deb beside it. */
export function localIndex(packages: Stanza[]): string {
  return formatControl(
    packages.map((s) => {
      const copy = new Map(s);
      copy.set('Filename', `./${debFileName(s)}`);
      return copy;
    }),
  );
}

/** The .deb's file name in the local repository: the last segment of its Filename in the index. */
export function debFileName(s: Stanza): string {
  const name = (s.get('Filename') ?? '').split('/').pop() ?? '';
  if (!/^[A-Za-z0-9][A-Za-z0-9+.~_%-]*\.deb$/.test(name))
    throw new Error(`the index names a file ${JSON.stringify(s.get('Filename'))} for ${s.get('Package')}`);
  return name;
}

/**
 * The SHA-256 of `path` in a Release file's body (InRelease after its signature was checked), or
 * undefined when it is not listed.
 */
export function releaseSha256(release: string, path: string): { sha256: string; size: number } | undefined {
  const s = parseControl(release)[0];
  for (const line of (s?.get('SHA256') ?? '').split('\n')) {
    const [sum, size, name] = line.trim().split(/\s+/);
    if (name === path && sum && /^[0-9a-f]{64}$/.test(sum)) return { sha256: sum, size: Number(size) };
  }
  return undefined;
}

/** The file a local repository keeps its description in, beside Packages. */
export const REPO_FILE = 'vigil-repo.json';

/** What fetch writes into a package set's directory, and apply --offline reads. */
export interface RepoInfo {
  format: 'vigil-airgap-debian/1';
  /** `debian/13`: the os-release ID and VERSION_ID of the machines it is for. */
  release: string;
  arch: string;
  /** The packages asked for (the closure's roots). */
  packages: string[];
  source: string;
  /** How the index was checked: `signed` (InRelease verified with the keyring), `release` (unsigned InRelease's SHA-256), `none`. */
  index: 'signed' | 'release' | 'none';
  base: string;
  count: number;
}
