/**
 * The air gap's keys: an ed25519 signing key on the outside machine (a PKCS#8 PEM file, mode
 * 0600, never printed) and the trust file the cluster holds. The trust file is a chain of links:
 * the first names the first key and is signed by it; each rotation adds a link naming the next
 * key, signed by the key it replaces and by the new one, so a cluster that trusts the chain's
 * start can follow every rotation from the chain alone, with no network (TUF's root rotation,
 * reduced to one key per link). Only the last key of a chain signs bundles; the ones before it
 * are retired.
 *
 * Every signature covers raw bytes (a link's body is kept as the exact string signed), so no
 * JSON canonicalisation is needed: what was signed is what is parsed.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { VigilError, problem } from '../util/errors.ts';

export const TRUST_FORMAT = 'vigil-airgap-trust/1';

/** What one link of the chain says. */
export interface LinkBody {
  version: number;
  keyId: string;
  /** The key's SubjectPublicKeyInfo (DER), base64. */
  publicKey: string;
  createdAt: string;
  /** The key this link replaces (absent on the first link). */
  previousKeyId?: string;
}

export interface Link {
  /** The exact JSON text signed. */
  body: string;
  signatures: { keyId: string; signature: string }[];
}

export interface TrustChain {
  format: typeof TRUST_FORMAT;
  links: Link[];
}

export interface TrustedKey {
  keyId: string;
  key: KeyObject;
  version: number;
}

/** A key's id: the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

export function signBytes(key: KeyObject, bytes: Buffer | string): string {
  return sign(null, Buffer.from(bytes), key).toString('base64');
}

export function verifyBytes(key: KeyObject, bytes: Buffer | string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(bytes), key, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** A fresh ed25519 key pair. */
export function newKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/** Writes a private key as PKCS#8 PEM, mode 0600, refusing to replace an existing file. */
export async function writePrivateKey(path: string, key: KeyObject): Promise<void> {
  const pem = key.export({ type: 'pkcs8', format: 'pem' });
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new VigilError('AIRGAP_KEY', [
        problem(path, 'already exists; a key is never overwritten', 'choose another path, or move the old key away yourself'),
      ]);
    }
    throw new VigilError('AIRGAP_KEY', [problem(path, `cannot be created (${(err as Error).message})`, 'check that the directory exists and is writable')], {
      cause: err,
    });
  }
  try {
    await fh.chmod(0o600); // the umask can only remove bits; say it anyway for a umask of 0
    await fh.writeFile(pem);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads a private signing key, refusing one that group or others can read. */
export async function readPrivateKey(path: string): Promise<KeyObject> {
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch (err) {
    throw new VigilError('AIRGAP_KEY', [problem(path, 'signing key not found', 'give the key written by `vigil airgap keys init` (or `rotate`)')], {
      cause: err,
    });
  }
  if ((mode & 0o077) !== 0) {
    throw new VigilError('AIRGAP_KEY', [
      problem(path, `signing key is readable by others (mode ${mode.toString(8).padStart(4, '0')})`, `run: chmod 600 ${path}`),
    ]);
  }
  try {
    const key = createPrivateKey(await readFile(path));
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'unknown'} key`);
    return key;
  } catch (err) {
    throw new VigilError(
      'AIRGAP_KEY',
      [problem(path, `is not an ed25519 private key in PEM (${(err as Error).message})`, 'give the key written by `vigil airgap keys init`')],
      { cause: err },
    );
  }
}

function linkFor(body: LinkBody, signers: KeyObject[]): Link {
  const text = JSON.stringify(body);
  return { body: text, signatures: signers.map((k) => ({ keyId: keyIdOf(createPublicKey(k)), signature: signBytes(k, text) })) };
}

/** The chain of a new root of trust: one link, the key signing itself. */
export function firstChain(privateKey: KeyObject, now = new Date()): TrustChain {
  const pub = createPublicKey(privateKey);
  const body: LinkBody = {
    version: 1,
    keyId: keyIdOf(pub),
    publicKey: pub.export({ type: 'spki', format: 'der' }).toString('base64'),
    createdAt: now.toISOString(),
  };
  return { format: TRUST_FORMAT, links: [linkFor(body, [privateKey])] };
}

/** The chain one rotation longer: the next link names `next`, signed by `current` and `next`. */
export function rotatedChain(chain: TrustChain, current: KeyObject, next: KeyObject, source: string, now = new Date()): TrustChain {
  const last = verifyChain(chain, source).at(-1)!;
  const currentId = keyIdOf(createPublicKey(current));
  if (currentId !== last.keyId) {
    throw new VigilError('AIRGAP_KEY', [
      problem(
        source,
        `the key given (id ${currentId}) is not the one this trust file trusts now (id ${last.keyId})`,
        'give the key that signs bundles today (the last one `keys init` or `keys rotate` wrote)',
      ),
    ]);
  }
  const pub = createPublicKey(next);
  const body: LinkBody = {
    version: last.version + 1,
    keyId: keyIdOf(pub),
    publicKey: pub.export({ type: 'spki', format: 'der' }).toString('base64'),
    createdAt: now.toISOString(),
    previousKeyId: last.keyId,
  };
  return { format: TRUST_FORMAT, links: [...chain.links, linkFor(body, [current, next])] };
}

/**
 * Checks every link of a chain and returns its keys, first to last. The first link must be
 * signed by its own key; each later one by the key before it and by its own.
 */
export function verifyChain(chain: TrustChain, source: string): TrustedKey[] {
  const bad = (where: string, message: string): VigilError =>
    new VigilError('AIRGAP_KEY', [problem(`${source} ${where}`, message, 'use the trust file written by `vigil airgap keys init`/`rotate`, unedited')]);
  if (chain.format !== TRUST_FORMAT) throw bad('format', `is ${JSON.stringify(chain.format)}, not ${TRUST_FORMAT}`);
  if (!Array.isArray(chain.links) || chain.links.length === 0) throw bad('links', 'holds no key');
  const keys: TrustedKey[] = [];
  chain.links.forEach((link, i) => {
    const where = `links[${i}]`;
    let body: LinkBody;
    let key: KeyObject;
    try {
      body = JSON.parse(link.body) as LinkBody;
      key = createPublicKey({ key: Buffer.from(body.publicKey, 'base64'), format: 'der', type: 'spki' });
    } catch {
      throw bad(where, 'is not a link: its body does not hold a public key');
    }
    if (key.asymmetricKeyType !== 'ed25519' || keyIdOf(key) !== body.keyId) throw bad(where, 'names a key id that is not its key');
    if (body.version !== i + 1) throw bad(where, `has version ${body.version}, expected ${i + 1}`);
    const prev = keys.at(-1);
    if (prev?.keyId !== body.previousKeyId) throw bad(where, `does not follow the key before it (${prev?.keyId ?? 'none'})`);
    const signers = prev ? [prev, { keyId: body.keyId, key }] : [{ keyId: body.keyId, key }];
    for (const s of signers) {
      const sig = (link.signatures ?? []).find((x) => x.keyId === s.keyId);
      if (!sig || !verifyBytes(s.key, link.body, sig.signature)) {
        throw bad(where, `lacks a valid signature by key ${s.keyId}${prev ? ' (a rotation is signed by the old key and the new one)' : ''}`);
      }
    }
    keys.push({ keyId: body.keyId, key, version: body.version });
  });
  return keys;
}

/** Whether `longer` starts with every link of `shorter` (the same bytes), so it only adds rotations. */
export function extendsChain(shorter: TrustChain, longer: TrustChain): boolean {
  return (
    longer.links.length >= shorter.links.length &&
    shorter.links.every((l, i) => l.body === longer.links[i]!.body && JSON.stringify(l.signatures) === JSON.stringify(longer.links[i]!.signatures))
  );
}

export async function readTrust(path: string): Promise<{ chain: TrustChain; keys: TrustedKey[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new VigilError('AIRGAP_KEY', [problem(path, 'trust file not found', 'give the trust file written by `vigil airgap keys init`')], {
      cause: err,
    });
  }
  let chain: TrustChain;
  try {
    chain = JSON.parse(text) as TrustChain;
  } catch (err) {
    throw new VigilError('AIRGAP_KEY', [problem(path, 'is not JSON', 'give the trust file written by `vigil airgap keys init`')], { cause: err });
  }
  return { chain, keys: verifyChain(chain, path) };
}

/** Writes a trust file whole or not at all (a temporary file renamed over it). */
export async function writeTrust(path: string, chain: TrustChain): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(chain, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, path);
}

/** `vigil airgap keys init`: a new key and the trust file naming it. */
export async function initKeys(keyPath: string, trustPath: string, now = new Date()): Promise<string> {
  try {
    await stat(trustPath);
    throw new VigilError('AIRGAP_KEY', [
      problem(trustPath, 'already exists; a root of trust is never overwritten', 'to change keys, run `vigil airgap keys rotate`; or choose another path'),
    ]);
  } catch (err) {
    if (err instanceof VigilError) throw err;
  }
  const { privateKey } = newKeyPair();
  await writePrivateKey(keyPath, privateKey);
  const chain = firstChain(privateKey, now);
  await writeTrust(trustPath, chain);
  return keyIdOf(createPublicKey(privateKey));
}

/** `vigil airgap keys rotate`: a new key at `newKeyPath`, and the trust file one link longer. */
export async function rotateKeys(keyPath: string, newKeyPath: string, trustPath: string, now = new Date()): Promise<{ from: string; to: string }> {
  const current = await readPrivateKey(keyPath);
  const { chain } = await readTrust(trustPath);
  const { privateKey } = newKeyPair();
  const next = rotatedChain(chain, current, privateKey, trustPath, now); // checks before anything is written
  await writePrivateKey(newKeyPath, privateKey);
  await writeTrust(trustPath, next);
  return { from: keyIdOf(createPublicKey(current)), to: keyIdOf(createPublicKey(privateKey)) };
}
