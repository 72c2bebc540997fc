/**
 * Trust between the admin's machine and the cluster machines over SSH: the admin key pair, host
 * keys read and pinned on first contact (an explicit step, with a decision: never on first use by
 * itself), and the admin public key installed with a password used for that one connection.
 * Public through src/remote/ssh.ts.
 */
import { readFile, stat } from 'node:fs/promises';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { Client } from 'ssh2';
import { VigilError, problem } from '../util/errors.ts';
import { addKnownHost, fingerprint, pinnedKeys, readKnownHosts, type HostKey } from './known-hosts.ts';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  algorithmsFor,
  dial,
  hostKeyFile,
  runChannel,
  shellQuote,
  where,
  type DialContext,
  type SshTarget,
} from './ssh-connect.ts';

// ---------------------------------------------------------------- keys

/** An OpenSSH key pair: the private key in `openssh-key-v1` format, the public key as an authorized_keys line. */
export interface AdminKeyPair {
  privateKey: string;
  publicKey: string;
}

/** An SSH wire-format string: uint32 length, then the bytes (RFC 4251 §5). */
function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/**
 * A fresh ed25519 key pair from node:crypto, written in OpenSSH's own `openssh-key-v1` format
 * (PROTOCOL.key in the OpenSSH sources), unencrypted: the file is mode 600, as the CA key is.
 *
 * Not ssh2's `utils.generateKeyPairSync`: 1.17 writes a public key whose first byte is 0 as 31
 * bytes (1 key in 256), which OpenSSH refuses ("error in libcrypto") for the key file and the
 * authorized_keys line alike. src/remote/ssh.test.ts checks keys from here with ssh-keygen.
 */
export function generateAdminKey(comment = 'vigil-admin'): AdminKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  return openSshEd25519(seed, pub, comment);
}

/** An ed25519 key (32-byte seed and public key) as an OpenSSH private key file and public key line. */
export function openSshEd25519(seed: Buffer, pub: Buffer, comment: string): AdminKeyPair {
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  let secret = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  // Padded with 1, 2, 3, ... to the cipher block size (8 for "none").
  const pad = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const nkeys = Buffer.alloc(4);
  nkeys.writeUInt32BE(1);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), nkeys, sshString(blob), sshString(secret)]);
  const lines = body.toString('base64').match(/.{1,70}/g)!;
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${blob.toString('base64')} ${comment}`,
  };
}

/** Reads the admin's private key, refusing a file others can read (it would have to count as leaked). */
export async function readAdminKey(path: string): Promise<Buffer> {
  const fail = (message: string, fix: string, cause?: unknown): never => {
    throw new VigilError('SSH_AUTH', [problem(path, message, fix)], { cause });
  };
  try {
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0)
      fail(
        `the admin SSH key has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: group or others can read it`,
        `chmod 600 ${path}; if others had access, make a new key and install it on every machine`,
      );
    return await readFile(path);
  } catch (err) {
    if (err instanceof VigilError) throw err;
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return fail(
      missing ? 'the admin SSH key does not exist' : 'the admin SSH key cannot be read',
      missing
        ? '`vigil init` creates it beside the cluster file (ssh/id_ed25519); run it, or restore the key from your backup'
        : `check the permissions of ${path}`,
      err,
    );
  }
}

/** The `type base64` part of an authorized_keys line, which identifies the key whatever its comment. */
function keyIdentity(publicKey: string): { type: string; b64: string } {
  const [type, b64] = publicKey.trim().split(/\s+/);
  if (!type || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64))
    throw new VigilError('USAGE', [problem('admin public key', 'is not an OpenSSH public key line', 'pass the content of ssh/id_ed25519.pub')]);
  return { type, b64 };
}

// ---------------------------------------------------------------- host keys

export interface ScannedHostKey extends HostKey {
  fingerprint: string;
}

/** The key the machine offers, read in a key exchange without logging in. Trusts nothing by itself. */
export async function scanHostKey(target: SshTarget, opts: { timeoutMs?: number } = {}): Promise<ScannedHostKey> {
  let seen: HostKey | undefined;
  await dial({ target, knownHostsFile: '(none)', timeoutMs: opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, pinned: [] }, (k) => (seen = k));
  if (!seen)
    throw new VigilError('SSH_UNREACHABLE', [problem(where(target), 'the machine completed no key exchange', 'check that an SSH server listens there')]);
  return { ...seen, fingerprint: fingerprint(seen.blob) };
}

export interface PinResult {
  type: string;
  /** `SHA256:…`, as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  /** `pinned`: added to the file now; `already-pinned`: the file had it and the machine proved it holds it. */
  status: 'pinned' | 'already-pinned';
}

/**
 * First contact: pins the machine's host key in `knownHostsFile` once `confirm` accepts it
 * (interactive: the operator compares the fingerprint; `--accept-host-keys`: always). A machine
 * that already has a pin is checked against it instead, and a different key fails with
 * SSH_HOST_KEY: pinning never replaces a key.
 */
export async function pinHostKey(
  target: SshTarget,
  knownHostsFile: string,
  opts: { confirm: (key: ScannedHostKey, target: SshTarget) => boolean | Promise<boolean>; timeoutMs?: number },
): Promise<PinResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const existing = pinnedKeys(await readKnownHosts(knownHostsFile), target.address, target.port).trusted;
  if (existing.length > 0) {
    const c: DialContext = { target, knownHostsFile, timeoutMs, pinned: existing };
    await dial(c);
    const key = existing.find((k) => algorithmsFor([k.type]).length > 0) ?? existing[0]!;
    return { type: key.type, fingerprint: fingerprint(key.blob), status: 'already-pinned' };
  }
  const key = await scanHostKey(target, { timeoutMs });
  if (!(await opts.confirm(key, target))) {
    throw new VigilError('SSH_HOST_KEY', [
      problem(
        where(target),
        `host key ${key.fingerprint} (${key.type}) was not accepted`,
        `compare it with \`ssh-keygen -lf ${hostKeyFile(key.type)}\` on ${target.machine}'s console, then run again and accept it (or pass --accept-host-keys)`,
      ),
    ]);
  }
  await addKnownHost(knownHostsFile, target.address, target.port, key, `vigil:${target.machine}`);
  return { type: key.type, fingerprint: key.fingerprint, status: 'pinned' };
}

// ---------------------------------------------------------------- the admin key on a machine

/**
 * Appends the admin public key to the SSH user's ~/.ssh/authorized_keys unless a line already
 * holds that key (whatever its options or comment): idempotent. The key comes through stdin; the
 * script fixes the modes sshd's StrictModes insists on and the SELinux label on RHEL.
 */
const INSTALL_KEY_SCRIPT = `set -e
umask 077
read -r line
b64=$1
d="$HOME/.ssh"; f="$d/authorized_keys"
mkdir -p "$d"; chmod 700 "$d"; touch "$f"; chmod 600 "$f"
if awk -v k="$b64" '{ for (i = 1; i <= NF; i++) if ($i == k) found = 1 } END { exit !found }' "$f"; then echo present; exit 0; fi
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi
printf '%s\\n' "$line" >> "$f"
if command -v restorecon >/dev/null 2>&1; then restorecon -R "$d" >/dev/null 2>&1 || true; fi
echo added`;

/** Removes every line holding the key from the SSH user's authorized_keys (undoing `installAdminKey`). */
const REMOVE_KEY_SCRIPT = `set -e
b64=$1
f="$HOME/.ssh/authorized_keys"
[ -f "$f" ] || { echo absent; exit 0; }
t=$(mktemp "$f.XXXXXX")
awk -v k="$b64" '{ for (i = 1; i <= NF; i++) if ($i == k) next; print }' "$f" > "$t"
if cmp -s "$f" "$t"; then rm -f "$t"; echo absent; exit 0; fi
chmod 600 "$t"; mv -f "$t" "$f"; echo removed`;

async function runScript(client: Client, c: DialContext, script: string, args: string[], input: string): Promise<string> {
  const command = ['sh', '-c', script, 'vigil', ...args].map(shellQuote).join(' ');
  const r = await runChannel(client, command, input, c.timeoutMs);
  if (r.code !== 0) {
    throw new VigilError('REMOTE_COMMAND', [
      problem(
        where(c.target),
        `changing ~/.ssh/authorized_keys of ${c.target.user} failed (exit ${r.code}): ${r.stderr.toString().trim().slice(0, 300)}`,
        `check ~${c.target.user}/.ssh on ${c.target.machine} (owner ${c.target.user}, mode 700) and that its disk is not full or read-only`,
      ),
    ]);
  }
  return r.stdout.toString().trim();
}

/**
 * Logs in once with the password and installs the admin public key for the SSH user. The host
 * key must already be pinned. The password is used for this one connection and then dropped:
 * it is not kept, written, logged, or put in a message.
 */
export async function installAdminKey(
  target: SshTarget,
  opts: { knownHostsFile: string; password: string; publicKey: string; timeoutMs?: number },
): Promise<'added' | 'present'> {
  const { b64 } = keyIdentity(opts.publicKey);
  const c: DialContext = {
    target,
    knownHostsFile: opts.knownHostsFile,
    auth: { password: opts.password },
    timeoutMs: opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    pinned: [],
  };
  const client = (await dial(c))!;
  try {
    return (await runScript(client, c, INSTALL_KEY_SCRIPT, [b64], `${opts.publicKey.trim()}\n`)) === 'present' ? 'present' : 'added';
  } finally {
    client.end();
  }
}

/** Logs in with the admin key and removes it from the SSH user's authorized_keys (e.g. to undo an aborted init). */
export async function removeAdminKey(
  target: SshTarget,
  opts: { knownHostsFile: string; privateKey: string | Buffer; publicKey: string; timeoutMs?: number },
): Promise<boolean> {
  const { b64 } = keyIdentity(opts.publicKey);
  const c: DialContext = {
    target,
    knownHostsFile: opts.knownHostsFile,
    auth: { privateKey: opts.privateKey },
    timeoutMs: opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    pinned: [],
  };
  const client = (await dial(c))!;
  try {
    return (await runScript(client, c, REMOVE_KEY_SCRIPT, [b64], '')) === 'removed';
  } finally {
    client.end();
  }
}
