/**
 * The bundle format. A bundle is a directory:
 *
 *   manifest.json   what is inside: every file (path, size, SHA-256), every part (name, size,
 *                   SHA-256), the bundle's id, its sequence, creation time and expiry
 *   manifest.sig    the ed25519 signature over manifest.json's exact bytes, and the signer's key id
 *   trust.json      (optional) the signer's trust chain, so a cluster can follow a key rotation
 *   part-0001 ...   the payload: every file's bytes, in manifest order, cut into parts of at most
 *                   the size asked for; each part starts with a one-line header naming its bundle
 *                   and its place, so a part from another bundle is told apart from a damaged one
 *
 * No tar: the payload holds bytes only, so no entry can be a symlink, a device or a path the
 * manifest does not list; the manifest alone says where each byte goes.
 */
import { z } from 'zod';
import { VigilError, problem } from '../util/errors.ts';

export const BUNDLE_FORMAT = 'vigil-airgap-bundle/1';
export const SIGNATURE_FORMAT = 'vigil-airgap-signature/1';
export const MANIFEST = 'manifest.json';
export const SIGNATURE = 'manifest.sig';
export const TRUST_COPY = 'trust.json';
/** The directory an import keeps inside the target: the state and the manifest it came from. */
export const STATE_DIR = '.vigil-airgap';
/** A manifest larger than this is refused before parsing (a million files fit). */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

export const partName = (index: number): string => `part-${String(index).padStart(4, '0')}`;
export const PART_NAME = /^part-(\d{4,})$/;

/** A part's first line: `VIGIL-AIRGAP-PART 1 <bundleId> <index> <count>\n`. */
export function partHeader(bundleId: string, index: number, count: number): Buffer {
  return Buffer.from(`VIGIL-AIRGAP-PART 1 ${bundleId} ${index} ${count}\n`);
}
export const MAX_HEADER_BYTES = 128;

export function parsePartHeader(bytes: Buffer): { bundleId: string; index: number; count: number; length: number } | null {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) return null;
  const m = /^VIGIL-AIRGAP-PART 1 ([0-9a-f]{32}) (\d+) (\d+)$/.exec(bytes.subarray(0, nl).toString('latin1'));
  return m ? { bundleId: m[1]!, index: Number(m[2]), count: Number(m[3]), length: nl + 1 } : null;
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const manifestSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  bundleId: z.string().regex(/^[0-9a-f]{32}$/),
  sequence: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  createdAt: z.iso.datetime(),
  expiresAt: z.iso.datetime(),
  // `type` is checked apart from the schema: anything but a file is an unsafe entry, not a malformed one.
  files: z.array(z.strictObject({ path: z.string(), type: z.string(), size, sha256 })),
  parts: z.array(z.strictObject({ name: z.string(), size, sha256 })).min(1),
});
export type Manifest = z.infer<typeof manifestSchema>;

export const signatureSchema = z.strictObject({
  format: z.literal(SIGNATURE_FORMAT),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  signature: z.string().min(1),
});

/**
 * Why a bundle path is unsafe to write under a target directory, or null if it is safe: relative,
 * `/`-separated, no empty, `.` or `..` segment, no NUL or backslash, not under the import's own
 * state directory.
 */
export function unsafePath(path: string): string | null {
  if (path.length === 0) return 'is empty';
  if (path.startsWith('/')) return 'is absolute';
  if (path.includes('\0') || path.includes('\\')) return 'holds a NUL or a backslash';
  const segments = path.split('/');
  if (segments.includes('..')) return 'climbs out with `..`';
  if (segments.some((s) => s === '' || s === '.')) return 'has an empty or `.` segment';
  if (segments[0] === STATE_DIR) return `is under ${STATE_DIR}/, which the import keeps for itself`;
  if (Buffer.byteLength(path) > 4096) return 'is longer than 4096 bytes';
  return null;
}

/** Parses a size: a byte count, or a number with K, M, G or T (powers of 1024; KiB, MB, ... accepted). */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2]!.toUpperCase() || ' ');
  return Number.isSafeInteger(Math.floor(n)) ? Math.floor(n) : null;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Reports progress at most once a second and once at the end. */
export function throttle(report: ((line: string) => void) | undefined, label: string, total: number): { add(n: number): void; done(): void } {
  let seen = 0;
  let last = 0;
  const line = () => `${label}: ${formatBytes(seen)}${total > 0 ? ` of ${formatBytes(total)} (${Math.floor((seen / total) * 100)}%)` : ''}`;
  return {
    add(n) {
      seen += n;
      const now = performance.now();
      if (report && now - last >= 1000) {
        last = now;
        report(line());
      }
    },
    done() {
      report?.(line());
    },
  };
}

export function invalid(where: string, message: string): VigilError {
  return new VigilError('AIRGAP_INVALID', [problem(where, message, 'carry the bundle again as `vigil airgap bundle` wrote it')]);
}
