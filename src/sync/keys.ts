/**
 * The SSH trust file sync runs on: each app machine has its own key pair; every other app machine
 * lets that key in as root for one thing only, the receiver (a forced command), and only from that
 * machine's address; each pusher knows the standbys' host keys in advance and accepts no other.
 * Rendered here for the lab (src/lab/lab.ts) and for `vigil apply` on real machines.
 */
import { readFile } from 'node:fs/promises';
import { run } from '../util/exec.ts';

/** Creates an ed25519 key pair (private key mode 600, no passphrase: the agent uses it unattended). */
export async function createKeyPair(path: string, comment: string): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return (await readFile(`${path}.pub`, 'utf8')).trim();
}

/** `type base64` of a public key line, without its comment. */
const keyPart = (publicKey: string): string => publicKey.trim().split(/\s+/).slice(0, 2).join(' ');

/**
 * One authorized_keys line: the peer's sync key may run only the receiver, only from the peer's
 * address, with no terminal, forwarding or user rc (`restrict`).
 */
export function authorizedKeyLine(o: { peer: string; peerAddress: string; publicKey: string; receiverCommand: string }): string {
  if (/["\\\n]/.test(o.receiverCommand))
    throw new Error(`receiver command ${JSON.stringify(o.receiverCommand)} must not contain quotes, backslashes or newlines`);
  return `restrict,from="${o.peerAddress}",command="${o.receiverCommand} --peer ${o.peer}" ${keyPart(o.publicKey)} vigil-sync@${o.peer}`;
}

/** One known_hosts line for a machine's host key (OpenSSH writes [address]:port for ports other than 22). */
export function knownHostLine(address: string, port: number, hostPublicKey: string): string {
  return `${port === 22 ? address : `[${address}]:${port}`} ${keyPart(hostPublicKey)}`;
}
