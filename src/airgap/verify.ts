/**
 * Verifies a bundle, failing closed, in this order: the bundle directory holds only regular
 * files; a signature exists; its key is trusted (directly, or through rotations the bundle's
 * carried trust chain adds to the cluster's); the signature covers the manifest's exact bytes;
 * only then is the manifest parsed: schema, safe and unique paths, sizes that add up; then the
 * same-bundle no-op, the sequence, the expiry; then every part (present, of this bundle, at its
 * place, of its size and SHA-256) and every file (size and SHA-256), hashed in one streaming pass.
 *
 * Nothing is written here. An import passes a sink and receives each file's bytes from the very
 * stream that is hashed, so what it keeps is what was verified, never a second read of the stick
 * (RAUC CVE-2020-25860).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError, problem, type ErrorCode } from '../util/errors.ts';
import {
  MANIFEST,
  MAX_HEADER_BYTES,
  MAX_MANIFEST_BYTES,
  PART_NAME,
  SIGNATURE,
  TRUST_COPY,
  invalid,
  manifestSchema,
  partHeader,
  parsePartHeader,
  partName,
  signatureSchema,
  throttle,
  unsafePath,
  type Manifest,
} from './format.ts';
import { extendsChain, verifyBytes, verifyChain, type TrustChain, type TrustedKey } from './keys.ts';

/** What the cluster imported last. */
export interface LastImport {
  sequence: number;
  /** With it, a bundle of the same sequence is told apart from the same bundle. */
  manifestSha256?: string;
  /**
   * When it was imported, by this machine's clock then. Expiry is judged against the later of it
   * and the clock now, so a clock set back cannot revive an expired bundle.
   */
  importedAt?: string;
}

/** Where an import puts a verified file's bytes (nothing is kept until every check passed). */
export interface FileSink {
  open(path: string): Promise<{ write(b: Buffer): Promise<void>; close(): Promise<void> }>;
}

export interface VerifyOptions {
  trust: TrustChain;
  trustSource: string;
  last?: LastImport;
  now?: Date;
  sink?: FileSink;
  progress?: (line: string) => void;
}

export interface Verified {
  status: 'verified' | 'already-imported';
  manifest: Manifest;
  manifestText: string;
  signatureText: string;
  manifestSha256: string;
  keyId: string;
  /** The trust chain the bundle carried, when it moves the cluster's trust to a newer key. */
  newTrust?: TrustChain;
}

const refuse = (code: ErrorCode, where: string, message: string, fix: string) => new VigilError(code, [problem(where, message, fix)]);

async function regularFile(bundle: string, name: string): Promise<boolean> {
  try {
    const st = await lstat(join(bundle, name));
    if (st.isSymbolicLink()) {
      throw refuse(
        'AIRGAP_UNSAFE_PATH',
        join(bundle, name),
        'is a symlink; a bundle holds regular files only',
        'carry the bundle again as `vigil airgap bundle` wrote it',
      );
    }
    if (!st.isFile()) throw invalid(join(bundle, name), 'is not a regular file');
    return true;
  } catch (err) {
    if (err instanceof VigilError) throw err;
    return false;
  }
}

/** The key that signs for the cluster: its trusted key, or the newest of a chain that extends its chain. */
async function signingKeys(bundle: string, o: VerifyOptions): Promise<{ keys: TrustedKey[]; newTrust?: TrustChain }> {
  const keys = verifyChain(o.trust, o.trustSource);
  if (!(await regularFile(bundle, TRUST_COPY))) return { keys };
  let carried: TrustChain;
  let carriedKeys: TrustedKey[];
  try {
    carried = JSON.parse(await readFile(join(bundle, TRUST_COPY), 'utf8')) as TrustChain;
    carriedKeys = verifyChain(carried, join(bundle, TRUST_COPY));
  } catch {
    return { keys }; // a damaged carried chain adds nothing; the cluster's own still decides
  }
  if (carriedKeys.length > keys.length && extendsChain(o.trust, carried)) return { keys: carriedKeys, newTrust: carried };
  return { keys };
}

export async function verifyBundle(bundle: string, o: VerifyOptions): Promise<Verified> {
  try {
    return await verifyUnsafe(bundle, o);
  } catch (err) {
    if (err instanceof VigilError) throw err;
    // A read error of the medium (EIO, EACCES): the bundle cannot be checked, so it is refused.
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code !== 'string' || typeof e.path !== 'string') throw err;
    throw new VigilError('AIRGAP_INCOMPLETE', [problem(e.path, `cannot be read (${e.code})`, 'copy the bundle again to a local disk and verify that copy')], {
      cause: err,
    });
  }
}

async function verifyUnsafe(bundle: string, o: VerifyOptions): Promise<Verified> {
  const names = await bundleNames(bundle);
  const signed = await checkSignature(bundle, o);
  const manifest = parseManifest(bundle, signed.manifestText);
  const v: Verified = { status: 'verified', manifest, ...signed };
  if (isLastImport(bundle, manifest, signed.manifestSha256, o)) return { ...v, status: 'already-imported' };
  const headers = await checkParts(bundle, names, manifest);
  await streamPayload(bundle, manifest, headers, o);
  return v;
}

/** The bundle directory's entries: regular files only; manifest and signature present. */
async function bundleNames(bundle: string): Promise<string[]> {
  try {
    if (!(await lstat(bundle)).isDirectory()) throw invalid(bundle, 'is not a directory');
  } catch (err) {
    if (err instanceof VigilError) throw err;
    throw refuse('AIRGAP_INCOMPLETE', bundle, 'does not exist', 'give the bundle directory `vigil airgap bundle --out` wrote');
  }
  const names = await readdir(bundle);
  for (const n of names) await regularFile(bundle, n); // a symlink anywhere in the bundle is refused
  if (!names.includes(MANIFEST)) {
    throw refuse('AIRGAP_INCOMPLETE', join(bundle, MANIFEST), 'is missing', 'carry the whole bundle directory again');
  }
  if (!names.includes(SIGNATURE)) {
    throw refuse(
      'AIRGAP_UNSIGNED',
      join(bundle, SIGNATURE),
      'is missing: the bundle is not signed, and an unsigned bundle is never imported',
      'sign it: build it with `vigil airgap bundle --key KEY`',
    );
  }
  return names;
}

/** 1. The signature, over the raw bytes, before anything in the manifest is believed. */
async function checkSignature(bundle: string, o: VerifyOptions): Promise<Omit<Verified, 'status' | 'manifest'>> {
  if ((await lstat(join(bundle, MANIFEST))).size > MAX_MANIFEST_BYTES) throw invalid(join(bundle, MANIFEST), 'is larger than any manifest Vigil writes');
  const manifestBytes = await readFile(join(bundle, MANIFEST));
  const signatureText = await readFile(join(bundle, SIGNATURE), 'utf8');
  let sig;
  try {
    sig = signatureSchema.parse(JSON.parse(signatureText));
  } catch {
    throw invalid(join(bundle, SIGNATURE), 'is not a signature file');
  }
  const { keys, newTrust } = await signingKeys(bundle, o);
  const current = keys.at(-1)!;
  if (sig.keyId !== current.keyId) {
    const retired = keys.some((k) => k.keyId === sig.keyId);
    throw refuse(
      'AIRGAP_UNTRUSTED_KEY',
      join(bundle, SIGNATURE),
      `is signed by key ${sig.keyId}; ${o.trustSource} trusts key ${current.keyId}${retired ? ` (key ${sig.keyId} was rotated out)` : ''}`,
      'sign the bundle with the key the cluster trusts, or carry the trust chain of a rotation in the bundle (`vigil airgap bundle --trust`)',
    );
  }
  if (!verifyBytes(current.key, manifestBytes, sig.signature)) {
    throw refuse(
      'AIRGAP_BAD_SIGNATURE',
      join(bundle, MANIFEST),
      `does not match its signature by key ${sig.keyId}: the manifest or the signature was changed after signing`,
      'do not import this copy; build and carry the bundle again',
    );
  }
  return {
    manifestText: manifestBytes.toString('utf8'),
    signatureText,
    manifestSha256: createHash('sha256').update(manifestBytes).digest('hex'),
    keyId: sig.keyId,
    newTrust,
  };
}

/** 2. The manifest, now known to be the signer's: its schema, safe and unique paths, sizes that add up. */
function parseManifest(bundle: string, manifestText: string): Manifest {
  const where = join(bundle, MANIFEST);
  let manifest: Manifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(manifestText));
  } catch (err) {
    throw invalid(where, `is signed but not a manifest this Vigil reads (${(err as Error).message.split('\n')[0]})`);
  }
  const unsafe = (path: string, why: string) =>
    refuse('AIRGAP_UNSAFE_PATH', `${where} files ${JSON.stringify(path)}`, why, 'do not import this bundle; rebuild it from regular files');
  const seen = new Set<string>();
  for (const f of manifest.files) {
    const why = f.type !== 'file' ? `is a ${f.type}, not a regular file` : unsafePath(f.path);
    if (why) throw unsafe(f.path, why);
    if (seen.has(f.path)) throw unsafe(f.path, 'is listed twice');
    seen.add(f.path);
  }
  // A file may not also be a directory of another (a/b and a/b/c): the second write would fail half-way.
  for (const p of seen) {
    const segs = p.split('/');
    for (let i = 1; i < segs.length; i++) {
      const dir = segs.slice(0, i).join('/');
      if (seen.has(dir)) throw unsafe(dir, `is a file and the directory of ${JSON.stringify(p)}`);
    }
  }
  const count = manifest.parts.length;
  manifest.parts.forEach((p, i) => {
    if (p.name !== partName(i + 1)) throw invalid(`${where} parts[${i}]`, `is named ${p.name}, not ${partName(i + 1)}`);
  });
  const payload = manifest.parts.reduce((s, p, i) => s + p.size - partHeader(manifest.bundleId, i + 1, count).length, 0);
  if (payload !== manifest.files.reduce((s, f) => s + f.size, 0)) throw invalid(where, 'its parts and files do not add up to the same size');
  return manifest;
}

/** 3. Which bundle this is against the last import: true if the same one; throws if older or expired. */
function isLastImport(bundle: string, manifest: Manifest, manifestSha256: string, o: VerifyOptions): boolean {
  const last = o.last;
  if (last && manifest.sequence === last.sequence && (last.manifestSha256 === undefined || last.manifestSha256 === manifestSha256)) return true;
  if (last && manifest.sequence <= last.sequence) {
    throw refuse(
      'AIRGAP_OLDER',
      bundle,
      manifest.sequence === last.sequence
        ? `has sequence ${manifest.sequence}, which was already imported from another bundle`
        : `has sequence ${manifest.sequence}, older than the last imported (${last.sequence}): an old stick?`,
      `carry a bundle with a sequence above ${last.sequence}`,
    );
  }
  const now = (o.now ?? new Date()).getTime();
  const floor = Date.parse(last?.importedAt ?? '') || 0;
  if (Math.max(now, floor) >= Date.parse(manifest.expiresAt)) {
    const back = floor > now ? `, but the last import was at ${last!.importedAt}: the clock went back` : '';
    throw refuse(
      'AIRGAP_EXPIRED',
      bundle,
      `expired at ${manifest.expiresAt} (this machine's clock says ${new Date(now).toISOString()}${back})`,
      'build a fresh bundle on the outside machine (`vigil airgap bundle`); if this clock is wrong, fix the clock',
    );
  }
  return false;
}

/** 4. Every part present, of this bundle, at its place and of its size; returns each header's length. */
async function checkParts(bundle: string, names: string[], manifest: Manifest): Promise<number[]> {
  const count = manifest.parts.length;
  for (const n of names) {
    const m = PART_NAME.exec(n);
    if (m && Number(m[1]) > count) {
      throw refuse(
        'AIRGAP_FOREIGN_PART',
        join(bundle, n),
        `is not part of this bundle, which has ${count} parts`,
        'remove it: it was left from another bundle',
      );
    }
  }
  const missing = manifest.parts.filter((p) => !names.includes(p.name));
  if (missing.length > 0) {
    throw new VigilError(
      'AIRGAP_INCOMPLETE',
      missing.map((p) =>
        problem(
          join(bundle, p.name),
          `is missing (${p.size} bytes, part ${p.name.slice(5)} of ${count})`,
          'copy it from the outside machine or the other medium',
        ),
      ),
    );
  }
  const headers: number[] = [];
  for (const [i, p] of manifest.parts.entries()) {
    const file = join(bundle, p.name);
    const expected = partHeader(manifest.bundleId, i + 1, count);
    const head = await readHead(file);
    if (!head.subarray(0, expected.length).equals(expected)) {
      const h = parsePartHeader(head);
      if (h && h.bundleId !== manifest.bundleId) {
        throw refuse(
          'AIRGAP_FOREIGN_PART',
          file,
          `belongs to bundle ${h.bundleId}, not to this one (${manifest.bundleId})`,
          `copy ${p.name} of this bundle instead`,
        );
      }
      if (h) throw refuse('AIRGAP_FOREIGN_PART', file, `is part ${h.index} of this bundle, not part ${i + 1}`, 'put each part under its own name');
      throw refuse('AIRGAP_TAMPERED', file, 'does not start with its part header', 'copy the part again');
    }
    headers.push(expected.length);
    const size = (await lstat(file)).size;
    if (size !== p.size) {
      throw refuse('AIRGAP_TAMPERED', file, `is ${size} bytes; the signed manifest says ${p.size}`, 'copy the part again (a truncated or altered copy)');
    }
  }
  return headers;
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(MAX_HEADER_BYTES);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Hashes every part and cuts the payload into the manifest's files, each hashed too. */
async function streamPayload(bundle: string, manifest: Manifest, headers: number[], o: VerifyOptions): Promise<void> {
  const total = manifest.parts.reduce((s, p) => s + p.size, 0);
  const progress = throttle(o.progress, 'verify', total);
  const problems = [];
  let fileIndex = -1;
  let left = 0;
  let hash = createHash('sha256');
  let out: Awaited<ReturnType<FileSink['open']>> | null = null;
  const finishFile = async () => {
    const f = manifest.files[fileIndex];
    if (f) {
      await out?.close();
      out = null;
      const got = hash.digest('hex');
      if (got !== f.sha256)
        problems.push(
          problem(`${bundle} file ${f.path}`, `SHA-256 is ${got}; the signed manifest says ${f.sha256}`, 'do not import this copy; carry the bundle again'),
        );
    }
  };
  const nextFile = async () => {
    await finishFile();
    fileIndex += 1;
    const f = manifest.files[fileIndex];
    if (!f) return;
    hash = createHash('sha256');
    left = f.size;
    if (o.sink) out = await o.sink.open(f.path);
  };
  await nextFile();
  while (fileIndex < manifest.files.length && left === 0) await nextFile(); // leading empty files
  for (const [i, p] of manifest.parts.entries()) {
    const partHash = createHash('sha256');
    let skip = headers[i]!;
    for await (const chunk of createReadStream(join(bundle, p.name), { highWaterMark: 1 << 20 })) {
      let b = chunk as Buffer;
      partHash.update(b);
      progress.add(b.length);
      if (skip > 0) {
        const s = Math.min(skip, b.length);
        skip -= s;
        b = b.subarray(s);
      }
      while (b.length > 0 && fileIndex < manifest.files.length) {
        const n = Math.min(left, b.length);
        const piece = b.subarray(0, n);
        hash.update(piece);
        if (out) await (out as { write(b: Buffer): Promise<void> }).write(piece);
        left -= n;
        b = b.subarray(n);
        while (fileIndex < manifest.files.length && left === 0) await nextFile();
      }
    }
    const got = partHash.digest('hex');
    if (got !== p.sha256)
      problems.push(problem(join(bundle, p.name), `SHA-256 is ${got}; the signed manifest says ${p.sha256}`, 'do not import this copy; carry the part again'));
  }
  if (fileIndex < manifest.files.length) {
    // Only if a part shrank after its size was checked (a stick still being written to).
    problems.push(
      problem(bundle, `the parts ended inside ${manifest.files[fileIndex]!.path}`, 'copy the bundle again and leave the medium alone while verifying'),
    );
  }
  await finishFile();
  progress.done();
  if (problems.length > 0) throw new VigilError('AIRGAP_TAMPERED', problems);
}
