/**
 * `vigil airgap bundle DIR --key KEY --out BUNDLE`: every regular file under DIR, streamed into
 * parts (no file is held in memory), with a signed manifest. The bundle is written into a
 * temporary directory beside BUNDLE and renamed into place at the end: a failure leaves no half
 * bundle under BUNDLE's name. The sequence only goes up: the last one used is kept beside the key
 * (KEY.sequence), and a bundle with a sequence not above it is refused.
 */
import { createHash, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VigilError, problem } from '../util/errors.ts';
import { BUNDLE_FORMAT, MANIFEST, SIGNATURE, SIGNATURE_FORMAT, TRUST_COPY, partHeader, partName, throttle, unsafePath, type Manifest } from './format.ts';
import { keyIdOf, readPrivateKey, readTrust, signBytes } from './keys.ts';

export interface BundleOptions {
  dir: string;
  keyPath: string;
  out: string;
  /** Largest part in bytes, header included. */
  maxPartBytes?: number;
  /** Default: one above the last used with this key (KEY.sequence). */
  sequence?: number;
  expiresInDays?: number;
  /** The signer's trust file, carried in the bundle so a cluster can follow a rotation. */
  trustPath?: string;
  now?: Date;
  progress?: (line: string) => void;
}

const bundleError = (where: string, message: string, fix: string) => new VigilError('AIRGAP_BUNDLE', [problem(where, message, fix)]);

/** Every regular file under `root`, relative paths sorted; a symlink or a special file is an error. */
export async function listFiles(root: string): Promise<{ path: string; size: number }[]> {
  const found: { path: string; size: number }[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true });
    for (const e of entries) {
      const path = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(path);
      else if (e.isFile()) {
        const why = unsafePath(path) ?? (path.endsWith('.partial') ? 'is an unfinished download (`vigil airgap fetch` leaves .partial files)' : null);
        if (why) throw bundleError(join(root, path), `cannot be carried: the path ${why}`, 'run fetch again until it succeeds, or rename or remove the file');
        found.push({ path, size: (await lstat(join(root, path))).size });
      } else {
        throw bundleError(
          join(root, path),
          e.isSymbolicLink() ? 'is a symlink; a bundle carries regular files only' : 'is not a regular file',
          'replace it with the file it points to (cp -L), or remove it',
        );
      }
    }
  };
  try {
    if (!(await lstat(root)).isDirectory()) throw bundleError(root, 'is not a directory', 'give the directory `vigil airgap fetch --out` filled');
  } catch (err) {
    if (err instanceof VigilError) throw err;
    throw bundleError(root, 'does not exist', 'give the directory `vigil airgap fetch --out` filled');
  }
  await walk('').catch((err: NodeJS.ErrnoException) => {
    if (err instanceof VigilError || typeof err.code !== 'string') throw err;
    throw bundleError(err.path ?? root, `cannot be read (${err.code})`, 'check the permissions, and run again');
  });
  return found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function nextSequence(keyPath: string, asked: number | undefined): Promise<{ sequence: number; file: string }> {
  const file = `${keyPath}.sequence`;
  let last = 0;
  try {
    last = Number((await readFile(file, 'utf8')).trim());
    if (!Number.isSafeInteger(last) || last < 0) throw bundleError(file, 'does not hold a sequence number', 'write the last sequence used into it');
  } catch (err) {
    if (err instanceof VigilError) throw err;
  }
  if (asked === undefined) return { sequence: last + 1, file };
  if (asked <= last) {
    throw bundleError(
      `--sequence ${asked}`,
      `is not above the last sequence used with this key (${last}, in ${file}); a cluster refuses a bundle older than its last`,
      `give --sequence ${last + 1} or more, or leave it out`,
    );
  }
  return { sequence: asked, file };
}

/** Writes parts of at most `maxPartBytes`, header included, and hashes each. */
class PartWriter {
  readonly parts: { name: string; size: number; sha256: string }[] = [];
  private fh: FileHandle | null = null;
  private hash = createHash('sha256');
  private room = 0;
  private size = 0;

  constructor(
    private readonly dir: string,
    private readonly bundleId: string,
    private readonly count: number,
    private readonly maxPartBytes: number,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      if (!this.fh || this.room === 0) await this.openNext();
      const n = Math.min(rest.length, this.room);
      await this.put(rest.subarray(0, n));
      this.room -= n;
      rest = rest.subarray(n);
    }
  }

  async finish(): Promise<void> {
    if (!this.fh) await this.openNext(); // an empty payload still has one part, its header only
    await this.closeCurrent();
  }

  private async put(b: Buffer): Promise<void> {
    await this.fh!.write(b);
    this.hash.update(b);
    this.size += b.length;
  }

  private async openNext(): Promise<void> {
    await this.closeCurrent();
    const index = this.parts.length + 1;
    const header = partHeader(this.bundleId, index, this.count);
    this.fh = await open(join(this.dir, partName(index)), 'wx', 0o644);
    this.hash = createHash('sha256');
    this.size = 0;
    await this.put(header);
    this.room = this.maxPartBytes - header.length;
    this.parts.push({ name: partName(index), size: 0, sha256: '' });
  }

  private async closeCurrent(): Promise<void> {
    if (!this.fh) return;
    await this.fh.sync();
    await this.fh.close();
    this.fh = null;
    const p = this.parts.at(-1)!;
    p.size = this.size;
    p.sha256 = this.hash.digest('hex');
  }
}

/** The number of parts a payload needs: each part carries maxPartBytes minus its header. */
export function partCount(payloadBytes: number, maxPartBytes: number, bundleId: string): number {
  let count = 1;
  // The header grows with the count's digits; recount until stable.
  for (;;) {
    let left = payloadBytes;
    let n = 0;
    do {
      n += 1;
      left -= maxPartBytes - partHeader(bundleId, n, count).length;
    } while (left > 0);
    if (n === count) return count;
    count = n;
  }
}

export interface BundleResult {
  out: string;
  manifest: Manifest;
  keyId: string;
}

export async function createBundle(o: BundleOptions): Promise<BundleResult> {
  const now = o.now ?? new Date();
  const maxPartBytes = o.maxPartBytes ?? Number.MAX_SAFE_INTEGER;
  if (maxPartBytes < 1024)
    throw bundleError('--max-part-size', `is ${maxPartBytes} bytes; the smallest part is 1 KiB`, 'give at least 1K (e.g. 650M for a CD)');
  const expiresInDays = o.expiresInDays ?? 30;
  if (!(expiresInDays > 0)) throw bundleError('--expires-in-days', 'must be above 0', 'give the days the bundle stays valid, e.g. 30');
  const key: KeyObject = await readPrivateKey(o.keyPath);
  const keyId = keyIdOf(createPublicKey(key));
  let trustText: string | undefined;
  if (o.trustPath) {
    const { keys } = await readTrust(o.trustPath);
    if (keys.at(-1)!.keyId !== keyId) {
      throw new VigilError('AIRGAP_KEY', [
        problem(
          o.trustPath,
          `trusts key ${keys.at(-1)!.keyId} now, not the signing key ${keyId}`,
          'give the key the trust file names last, or its own trust file',
        ),
      ]);
    }
    trustText = await readFile(o.trustPath, 'utf8');
  }
  const { sequence, file: sequenceFile } = await nextSequence(o.keyPath, o.sequence);
  try {
    await lstat(o.out);
    throw bundleError(o.out, 'already exists', 'give a new path to --out, or remove the old bundle');
  } catch (err) {
    if (err instanceof VigilError) throw err;
  }
  const files = await listFiles(o.dir);
  const payloadBytes = files.reduce((s, f) => s + f.size, 0);
  const bundleId = randomBytes(16).toString('hex');
  const count = partCount(payloadBytes, maxPartBytes, bundleId);
  const tmp = join(dirname(o.out), `.${basename(o.out)}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const writer = new PartWriter(tmp, bundleId, count, maxPartBytes);
    const progress = throttle(o.progress, 'bundle', payloadBytes);
    const entries: Manifest['files'] = [];
    for (const f of files) {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of createReadStream(join(o.dir, f.path), { highWaterMark: 1 << 20 })) {
        const b = chunk as Buffer;
        hash.update(b);
        size += b.length;
        await writer.write(b);
        progress.add(b.length);
      }
      if (size !== f.size)
        throw bundleError(join(o.dir, f.path), 'changed while it was being bundled', 'stop whatever writes into the directory and run again');
      entries.push({ path: f.path, type: 'file', size, sha256: hash.digest('hex') });
    }
    await writer.finish();
    progress.done();
    if (writer.parts.length !== count) throw new Error(`bundle: ${writer.parts.length} parts written, ${count} counted`);
    const manifest: Manifest = {
      format: BUNDLE_FORMAT,
      bundleId,
      sequence,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + expiresInDays * 86_400_000).toISOString(),
      files: entries,
      parts: writer.parts,
    };
    const manifestText = `${JSON.stringify(manifest, null, 1)}\n`;
    await writeFile(join(tmp, MANIFEST), manifestText);
    await writeFile(join(tmp, SIGNATURE), `${JSON.stringify({ format: SIGNATURE_FORMAT, keyId, signature: signBytes(key, manifestText) })}\n`);
    if (trustText !== undefined) await writeFile(join(tmp, TRUST_COPY), trustText);
    await rename(tmp, o.out);
    await writeFile(sequenceFile, `${sequence}\n`);
    return { out: o.out, manifest, keyId };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    const e = err as NodeJS.ErrnoException;
    if (err instanceof VigilError || typeof e.code !== 'string') throw err;
    throw bundleError(
      e.path ?? o.out,
      `cannot be read or written (${e.code}); no bundle was written`,
      'check the permissions and the free space, and run again',
    );
  }
}
