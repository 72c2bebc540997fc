/**
 * Pinned SSH host keys, kept in an OpenSSH known_hosts file beside the cluster file
 * (`vigil.known_hosts`), so the admin's own `ssh -o UserKnownHostsFile=vigil.known_hosts` and
 * Vigil trust exactly the same keys.
 *
 * Format (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): `[marker] hostpatterns keytype base64-key [comment]`.
 * A host on port 22 is written `10.0.0.11`, any other port `[10.0.0.11]:2222`. Vigil writes plain
 * patterns; it also reads what OpenSSH may have added to the same file: hashed names
 * (`|1|salt|hmac`, Debian's ssh_config sets HashKnownHosts yes), comma-separated lists, `*`/`?`
 * wildcards and `!` negations. `@revoked` lines are honoured (such a key is never trusted);
 * `@cert-authority` lines are ignored (Vigil does not use host certificates).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** A host's public key as the SSH wire format carries it (RFC 4253 §6.6): type string, then the key. */
export interface HostKey {
  /** `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ... */
  type: string;
  blob: Buffer;
}

export interface KnownHostEntry {
  line: number;
  marker: '' | '@revoked' | '@cert-authority';
  /** The host pattern field as written (e.g. `[10.0.0.11]:2222` or `|1|…|…`). */
  hosts: string;
  key: HostKey;
}

/** OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the key blob's SHA-256 (`ssh-keygen -lf`). */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The type name inside a key blob (its first SSH string). */
export function keyType(blob: Buffer): string {
  if (blob.length < 4) throw new Error('not an SSH public key');
  const len = blob.readUInt32BE(0);
  if (len < 1 || len > 64 || blob.length < 4 + len) throw new Error('not an SSH public key');
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** How known_hosts names a host: the bare address on port 22, `[address]:port` otherwise. */
export function hostPattern(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

export function knownHostsLine(address: string, port: number, key: HostKey, comment?: string): string {
  const tail = comment ? ` ${comment.replace(/[\r\n]/g, ' ')}` : '';
  return `${hostPattern(address, port)} ${key.type} ${key.blob.toString('base64')}${tail}`;
}

/** Parses a known_hosts file; lines it cannot read are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) return;
    let marker: KnownHostEntry['marker'] = '';
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker'];
    const [hosts, type, b64] = fields;
    if (!hosts || !type || !b64) return;
    const blob = Buffer.from(b64, 'base64');
    try {
      if (keyType(blob) !== type) return; // a mangled line: the name outside must match the blob
    } catch {
      return;
    }
    out.push({ line: i + 1, marker, hosts, key: { type, blob } });
  });
  return out;
}

function globMatch(pattern: string, name: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(name);
}

/** Whether the host field of a line names this host (OpenSSH's match_hostname semantics, plus hashing). */
export function hostsMatch(hosts: string, address: string, port: number): boolean {
  const name = hostPattern(address, port);
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const p of hosts.split(',')) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false; // a negation wins over any positive match
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

export interface PinnedKeys {
  /** Keys trusted for the host (revoked ones removed). */
  trusted: HostKey[];
  /** Keys marked @revoked for the host (or anywhere: OpenSSH revokes a key whatever host it names). */
  revoked: HostKey[];
}

export function pinnedKeys(entries: KnownHostEntry[], address: string, port: number): PinnedKeys {
  const revoked = entries.filter((e) => e.marker === '@revoked').map((e) => e.key);
  const isRevoked = (k: HostKey) => revoked.some((r) => r.blob.equals(k.blob));
  const trusted = entries.filter((e) => e.marker === '' && hostsMatch(e.hosts, address, port) && !isRevoked(e.key)).map((e) => e.key);
  return { trusted, revoked };
}

/** Reads a known_hosts file; a missing file is an empty one. */
export async function readKnownHosts(file: string): Promise<KnownHostEntry[]> {
  try {
    return parseKnownHosts(await readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Adds a pin for the host unless that exact key is already pinned for it. The file is rewritten
 * whole through a temporary file and a rename, so a crash never leaves half a line that would
 * make OpenSSH or Vigil distrust every host after it. Mode 644: host keys are public.
 * Returns false when the key was already there.
 */
export async function addKnownHost(file: string, address: string, port: number, key: HostKey, comment?: string): Promise<boolean> {
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (pinnedKeys(parseKnownHosts(text), address, port).trusted.some((k) => k.blob.equals(key.blob))) return false;
  const next = `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${knownHostsLine(address, port, key, comment)}\n`;
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(next);
    await fh.chmod(0o644);
    await fh.sync();
    await fh.close();
    await rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  await chmod(file, 0o644);
  return true;
}
