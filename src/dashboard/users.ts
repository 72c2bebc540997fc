/**
 * The dashboard's users: passwords hashed with scrypt (node:crypto), kept in the secrets file as
 * `scrypt$N$r$p$<salt>$<hash>` (salt and hash base64url). The password itself is never stored.
 *
 * ```ts
 * const passwordHash = await hashPassword(newPassword());
 * await verifyPassword(passwordHash, typed); // true or false, in constant time
 * ```
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { DashboardRole } from '../config/schema.ts';

export interface DashboardUser {
  name: string;
  role: DashboardRole;
  passwordHash: string;
}

/** scrypt's cost: N = 2^15, r 8, p 1 (OWASP's floor for scrypt); about 30 ms and 32 MiB a login. */
const COST = { N: 1 << 15, r: 8, p: 1 };
const KEY_BYTES = 32;

const scrypt = (password: string, salt: Buffer, o: ScryptOptions, len: number) =>
  new Promise<Buffer>((resolve, reject) =>
    // maxmem: scrypt needs 128 * N * r bytes; node's default (32 MiB) is just too small for N = 2^15.
    scryptCb(password, salt, len, { ...o, maxmem: 256 * o.N! * o.r! }, (err, key) => (err ? reject(err) : resolve(key))),
  );

/** A new password for a generated user: 24 random bytes, base64url (32 characters). */
export const newDashboardPassword = (): string => randomBytes(24).toString('base64url');

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, COST, KEY_BYTES);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** Whether `password` matches `stored`; false for a malformed hash (the schema refuses those on load). */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  // Bounds against a hand-edited hash that would take minutes or gigabytes per login.
  if (!Number.isInteger(Math.log2(N)) || N > 1 << 20 || r < 1 || r > 32 || p < 1 || p > 16) return false;
  const want = Buffer.from(parts[5]!, 'base64url');
  const got = await scrypt(password, Buffer.from(parts[4]!, 'base64url'), { N, r, p }, want.length);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A hash of no password, checked for an unknown user so the answer takes as long as for a known one. */
let decoy: Promise<string> | undefined;
export const decoyHash = (): Promise<string> => (decoy ??= hashPassword(randomBytes(16).toString('hex')));
