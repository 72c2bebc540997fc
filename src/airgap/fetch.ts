/**
 * `vigil airgap fetch --sources FILE --out DIR`, on the outside machine. The sources file has one
 * download a line:
 *
 *   # the vendor's patch catalog, and a binary with its published checksum
 *   https://vendor.example/catalog/latest.xml  path=catalog/latest.xml
 *   https://repo.example/patches/kb123.msu     sha256=9f86d0...  path=patches/kb123.msu
 *
 * A download goes to DIR/PATH.partial and is renamed to DIR/PATH only once complete and, where a
 * SHA-256 is given, matching it; a mismatch removes the partial file (its bytes cannot be
 * trusted to resume from) and is an error. An interrupted download resumes with an HTTP Range
 * request; a file already under its final name and matching is skipped.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { dirname, join } from 'node:path';
import { VigilError, problem, type Problem } from '../util/errors.ts';
import { fetchDebian, parseDebLine, type DebSet, type PackageGroups } from './fetch-debian.ts';
import { formatBytes, throttle, unsafePath } from './format.ts';

export interface Source {
  line: number;
  url: URL;
  sha256?: string;
  path: string;
  /** A `deb` line: a Debian package set resolved from the apt repository at `url` into the directory `path` (fetch-debian.ts). */
  deb?: DebSet;
}

const FIELDS = ['sha256', 'path'];

/** Parses a sources file; every wrong line is reported at once, with the fix. */
export function parseSources(text: string, file: string): Source[] {
  const problems: Problem[] = [];
  const sources: Source[] = [];
  const byPath = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const where = (field: string) => `${file}:${line} ${field}`;
    const content = raw.replace(/(^|\s)#.*$/, '').trim();
    if (content === '') return;
    const [first, ...rest] = content.split(/\s+/);
    if (first === 'deb') {
      const set = parseDebLine(rest, file, line, problems);
      if (!set) return;
      const earlier = byPath.get(set.path);
      if (earlier !== undefined) {
        problems.push(problem(where('path'), `${JSON.stringify(set.path)} is also the path of line ${earlier}`, 'give one of them another path='));
        return;
      }
      byPath.set(set.path, line);
      sources.push(set);
      return;
    }
    let url: URL;
    try {
      url = new URL(first!);
    } catch {
      problems.push(problem(where('url'), `${JSON.stringify(first)} is not a URL`, 'start the line with an http:// or https:// URL'));
      return;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push(problem(where('url'), `${url.protocol} is not supported`, 'give an http:// or https:// URL'));
      return;
    }
    if (url.username || url.password) {
      problems.push(problem(where('url'), 'carries a user name or password', 'remove the credentials from the URL; a sources file holds no secret'));
      return;
    }
    const fields = new Map<string, string>();
    for (const r of rest) {
      const eq = r.indexOf('=');
      const key = eq < 0 ? r : r.slice(0, eq);
      if (eq < 0 || !FIELDS.includes(key)) {
        problems.push(problem(where(key), `${JSON.stringify(r)} is not a field`, `write fields as ${FIELDS.map((f) => `${f}=...`).join(' or ')}`));
        continue;
      }
      if (fields.has(key)) problems.push(problem(where(key), 'is given twice', 'keep one'));
      fields.set(key, r.slice(eq + 1));
    }
    const sha256 = fields.get('sha256')?.toLowerCase();
    if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) {
      problems.push(problem(where('sha256'), 'is not a SHA-256 (64 hex digits)', "copy the checksum the source publishes (sha256sum's first column)"));
    }
    const path = fields.get('path') ?? decodeURIComponent(url.pathname.split('/').pop() ?? '');
    const why = unsafePath(path) ?? (path.endsWith('.partial') ? 'ends with .partial, which fetch keeps for unfinished downloads' : null);
    if (why) {
      problems.push(problem(where('path'), `${JSON.stringify(path)} ${why}`, 'give path=DIR/NAME, relative, inside the output directory'));
      return;
    }
    const earlier = byPath.get(path);
    if (earlier !== undefined) {
      problems.push(problem(where('path'), `${JSON.stringify(path)} is also the path of line ${earlier}`, 'give one of them another path='));
      return;
    }
    byPath.set(path, line);
    sources.push({ line, url, sha256, path });
  });
  if (problems.length > 0) throw new VigilError('AIRGAP_SOURCES', problems);
  return sources;
}

export interface FetchOptions {
  sourcesPath: string;
  out: string;
  /** A request that sends nothing for this long is abandoned (it resumes on the next run). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  progress?: (line: string) => void;
  /** Package groups a `deb` line may name (`@vigil`), from the caller. */
  packageGroups?: PackageGroups;
}

export interface FetchedFile {
  path: string;
  bytes: number;
  sha256: string;
  outcome: 'downloaded' | 'resumed' | 'present' | 'written';
  verified: boolean;
}

export const fetchError = (where: string, message: string, fix: string, retryable = false, cause?: unknown) =>
  new VigilError('AIRGAP_FETCH', [problem(where, message, fix)], { retryable, cause });

async function sha256Of(path: string): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of createReadStream(path)) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { sha256: h.digest('hex'), bytes };
}

/** One GET; follows up to 5 redirects to http(s) URLs. */
export function get(url: URL, headers: Record<string, string>, o: FetchOptions, hops = 0): Promise<{ res: http.IncomingMessage; url: URL }> {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.get(url, { headers, signal: o.signal, timeout: o.idleTimeoutMs ?? 30_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        const next = new URL(res.headers.location, url);
        if (hops >= 5 || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
          reject(fetchError(url.href, `redirects too often or to ${next.protocol}`, 'give the final URL in the sources file'));
          return;
        }
        get(next, headers, o, hops + 1).then(resolve, reject);
        return;
      }
      resolve({ res, url });
    });
    req.on('timeout', () => req.destroy(new Error(`no data for ${o.idleTimeoutMs ?? 30_000} ms`)));
    req.on('error', (err) => reject(fetchError(url.href, `request failed: ${err.message}`, 'check the network and run fetch again: it resumes', true, err)));
  });
}

/** Downloads one file to DIR/PATH (resuming DIR/PATH.partial), verified against its SHA-256 when given. */
export async function fetchOne(s: Source, o: FetchOptions): Promise<FetchedFile> {
  const final = join(o.out, s.path);
  const partial = `${final}.partial`;
  const where = `${o.sourcesPath}:${s.line} ${s.url.href}`;
  if (
    await lstat(final).then(
      () => true,
      () => false,
    )
  ) {
    const have = await sha256Of(final);
    if (!s.sha256 || have.sha256 === s.sha256) return { path: s.path, ...have, outcome: 'present', verified: !!s.sha256 };
    throw fetchError(final, `exists and its SHA-256 is ${have.sha256}, not the published ${s.sha256}`, `remove ${final} and run fetch again`);
  }
  await mkdir(dirname(final), { recursive: true });
  let offset = await lstat(partial).then(
    (st) => st.size,
    () => 0,
  );
  const { res } = await get(s.url, offset > 0 ? { range: `bytes=${offset}-` } : {}, o);
  const status = res.statusCode ?? 0;
  let resumed = false;
  if (status === 206 && offset > 0) {
    const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
    if (!m || Number(m[1]) !== offset) {
      res.resume();
      await rm(partial, { force: true });
      throw fetchError(
        where,
        `answered a resume with another range (${res.headers['content-range'] ?? 'none'})`,
        'run fetch again: it starts this file over',
        true,
      );
    }
    resumed = true;
  } else if (status === 200) {
    offset = 0; // the server ignores ranges: start over
  } else if (status === 416 && offset > 0) {
    res.resume();
    await rm(partial, { force: true }); // the partial file is longer than the resource: it changed
    throw fetchError(where, 'the file changed on the server since the download began', 'run fetch again: it starts this file over', true);
  } else {
    res.resume();
    throw fetchError(where, `answered HTTP ${status}`, 'check the URL in the sources file', status >= 500);
  }
  const hash = createHash('sha256');
  if (offset > 0) {
    for await (const c of createReadStream(partial, { end: offset - 1 })) hash.update(c as Buffer);
  }
  const length = Number(res.headers['content-length'] ?? NaN);
  const progress = throttle(o.progress, s.path, Number.isFinite(length) ? offset + length : 0);
  progress.add(offset);
  const fh = await open(partial, offset > 0 ? 'a' : 'w', 0o644);
  let received = 0;
  try {
    for await (const c of res) {
      const b = c as Buffer;
      hash.update(b);
      await fh.write(b);
      received += b.length;
      progress.add(b.length);
    }
    await fh.sync();
  } catch (err) {
    throw fetchError(where, `download broke off after ${formatBytes(offset + received)} (${(err as Error).message})`, 'run fetch again: it resumes', true, err);
  } finally {
    await fh.close();
  }
  if (Number.isFinite(length) && received !== length) {
    throw fetchError(where, `sent ${received} of ${length} bytes`, 'run fetch again: it resumes', true);
  }
  progress.done();
  const sha256 = hash.digest('hex');
  if (s.sha256 && sha256 !== s.sha256) {
    await rm(partial, { force: true });
    throw fetchError(
      where,
      `SHA-256 of the download is ${sha256}, not the published ${s.sha256}; the file was removed`,
      "check the checksum in the sources file against the vendor's page; if it is right, the download was altered: do not carry it",
    );
  }
  await rename(partial, final);
  return { path: s.path, bytes: offset + received, sha256, outcome: resumed ? 'resumed' : 'downloaded', verified: !!s.sha256 };
}

/** Downloads every source in order; stops at the first failure (a re-run resumes). */
export async function fetchSources(o: FetchOptions): Promise<FetchedFile[]> {
  let text: string;
  try {
    text = await readFile(o.sourcesPath, 'utf8');
  } catch (err) {
    throw new VigilError('AIRGAP_SOURCES', [problem(o.sourcesPath, 'cannot be read', 'give the sources file (one URL a line; docs/airgap.md)')], {
      cause: err,
    });
  }
  const sources = parseSources(text, o.sourcesPath);
  await mkdir(o.out, { recursive: true });
  const done: FetchedFile[] = [];
  for (const s of sources) {
    try {
      if (s.deb) done.push(...(await fetchDebian(s as Source & { deb: DebSet }, o)));
      else done.push(await fetchOne(s, o));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (err instanceof VigilError || typeof e.code !== 'string') throw err;
      throw fetchError(
        e.path ?? o.out,
        `cannot be written (${e.code})`,
        'check the permissions and the free space, and run fetch again: it resumes',
        false,
        err,
      );
    }
  }
  return done;
}
