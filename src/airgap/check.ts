/**
 * Which air-gap set an app machine holds, and whether its patch directory still is that set: the
 * directory's own record (.vigil-airgap/state.json and the manifest the import kept beside it)
 * against every file present. The seed's "Patch Management > Health Check", done by the agent of
 * every app machine for `vigil status`, `vigil airgap status` and doctor.
 *
 * Hashing is cached by each file's identity (inode, size, mtime, ctime): a directory that did not
 * change costs one walk and one stat per file, not a read of every byte.
 *
 * ```ts
 * const checker = new PatchDirChecker('/var/lib/vigil/app/patches', ['.vigil-sync-partial']);
 * const s = await checker.check(); // { sequence: 7, matches: true, missing: [], ... }
 * ```
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { PatchDirState } from '../model/ha.ts';
import { MANIFEST, STATE_DIR, manifestSchema } from './format.ts';
import type { ImportState } from './import.ts';

/** How many paths of each kind a state names (the counts are always whole). */
export const LISTED = 20;

interface Cached {
  key: string;
  sha256: string;
}

const sha256File = (path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (b) => h.update(b))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });

/**
 * Every regular file below `dir` by relative path ('/'-separated), leaving out `top` at the top
 * (the import's record) and directories named in `anywhere` at any depth (rsync's partial
 * directories: a cut-off whole-directory push leaves its files in one per subdirectory).
 */
async function walk(dir: string, top: string[], anywhere: string[]): Promise<Map<string, { size: number; key: string }>> {
  const out = new Map<string, { size: number; key: string }>();
  const pending = [dir];
  while (pending.length) {
    const d = pending.pop()!;
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (err) {
      if (d === dir) throw err;
      continue; // removed while we walked
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if ((d === dir && top.includes(e.name)) || (e.isDirectory() && anywhere.includes(e.name))) continue;
      if (e.isDirectory()) pending.push(p);
      else {
        const st = await stat(p).catch(() => null);
        if (!st) continue;
        out.set(relative(dir, p).split(sep).join('/'), { size: st.size, key: `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}` });
      }
    }
  }
  return out;
}

export class PatchDirChecker {
  private readonly hashes = new Map<string, Cached>();

  /** `skip`: names that are no patch, at the top or as a directory at any depth (file sync's partial-transfer directory). */
  constructor(
    readonly dir: string,
    private readonly skip: string[] = [],
  ) {}

  async check(now = new Date()): Promise<PatchDirState> {
    const base: PatchDirState = {
      dir: this.dir,
      sequence: null,
      bundleId: null,
      manifestSha256: null,
      files: 0,
      missing: [],
      extra: [],
      different: [],
      counts: { missing: 0, extra: 0, different: 0 },
      matches: false,
      error: null,
      checkedAt: now.toISOString(),
    };
    let present: Map<string, { size: number; key: string }>;
    try {
      present = await walk(this.dir, [STATE_DIR, ...this.skip], this.skip);
    } catch (err) {
      return { ...base, error: `${this.dir} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
    let state: ImportState | null = null;
    let manifestText: string | null = null;
    try {
      state = JSON.parse(await readFile(join(this.dir, STATE_DIR, 'state.json'), 'utf8')) as ImportState;
      manifestText = await readFile(join(this.dir, STATE_DIR, MANIFEST), 'utf8');
    } catch {
      state = null;
    }
    const listed = new Map<string, { size: number; sha256: string }>();
    if (state && manifestText !== null) {
      base.sequence = state.sequence;
      base.bundleId = state.bundleId;
      base.manifestSha256 = state.manifestSha256;
      const sha = createHash('sha256').update(manifestText).digest('hex');
      const parsed = manifestSchema.safeParse(
        (() => {
          try {
            return JSON.parse(manifestText) as unknown;
          } catch {
            return null;
          }
        })(),
      );
      if (sha !== state.manifestSha256 || !parsed.success)
        return {
          ...base,
          error: `${join(this.dir, STATE_DIR)} does not hold the manifest its state.json names: the record was changed; import the bundle again`,
        };
      for (const f of parsed.data.files) listed.set(f.path, { size: f.size, sha256: f.sha256 });
      base.files = listed.size;
    }
    const missing: string[] = [];
    const different: string[] = [];
    for (const [path, want] of listed) {
      const have = present.get(path);
      if (!have) missing.push(path);
      else if (have.size !== want.size || (await this.hash(path, have.key)) !== want.sha256) different.push(path);
    }
    const extra = [...present.keys()].filter((p) => !listed.has(p));
    for (const p of this.hashes.keys()) if (!present.has(p)) this.hashes.delete(p);
    const cut = (a: string[]) => a.sort().slice(0, LISTED);
    return {
      ...base,
      missing: cut(missing),
      extra: cut(extra),
      different: cut(different),
      counts: { missing: missing.length, extra: extra.length, different: different.length },
      matches: state !== null && missing.length + extra.length + different.length === 0,
    };
  }

  private async hash(path: string, key: string): Promise<string | null> {
    const c = this.hashes.get(path);
    if (c?.key === key) return c.sha256;
    const sha256 = await sha256File(join(this.dir, path)).catch(() => null);
    if (sha256) this.hashes.set(path, { key, sha256 });
    return sha256;
  }
}

/** One line for people: `sequence 7, 12 files, matches` or what differs. */
export function describePatchDir(s: PatchDirState): string {
  if (s.error) return `CANNOT CHECK: ${s.error}`;
  if (s.sequence === null) return s.counts.extra ? `no bundle imported, ${s.counts.extra} file(s) not from a bundle` : 'no bundle imported';
  if (s.matches) return `sequence ${s.sequence}, ${s.files} file(s), matches its manifest`;
  const parts = [
    s.counts.missing ? `${s.counts.missing} missing (${s.missing.join(', ')}${s.counts.missing > s.missing.length ? ', ...' : ''})` : '',
    s.counts.different ? `${s.counts.different} different (${s.different.join(', ')}${s.counts.different > s.different.length ? ', ...' : ''})` : '',
    s.counts.extra ? `${s.counts.extra} extra (${s.extra.join(', ')}${s.counts.extra > s.extra.length ? ', ...' : ''})` : '',
  ].filter(Boolean);
  return `sequence ${s.sequence}, DIFFERS from its manifest: ${parts.join('; ')}`;
}

/**
 * For the agent's GET /status, asked every observer cycle with a short deadline: never waits for
 * a check (hashing a large new set takes seconds). It answers the last result (undefined before
 * the first one is done) and starts a new check in the background once that result is older
 * than `maxAgeMs`; one check at a time.
 */
export function throttledCheck(checker: PatchDirChecker, maxAgeMs = 2000): () => PatchDirState | undefined {
  let last: { at: number; state: PatchDirState } | null = null;
  let running = false;
  return () => {
    if (!running && (!last || performance.now() - last.at >= maxAgeMs)) {
      running = true;
      void checker
        .check()
        .then((state) => {
          last = { at: performance.now(), state };
        })
        .catch(() => undefined)
        .finally(() => {
          running = false;
        });
    }
    return last?.state;
  };
}
