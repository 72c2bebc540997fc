/**
 * Two directories swap names in one step: renameat2(2) with RENAME_EXCHANGE. Whoever opens
 * either path sees the one directory or the other, whole, at every instant; no moment exists
 * where a name is missing or half-filled, and a crash leaves one state or the other.
 *
 * Node has no renameat2, so it is asked of a program the machine already has: `mv --exchange
 * --no-target-directory` (GNU coreutils 9.5 and later: Debian trixie), else perl's `syscall`
 * (perl-base is Essential on every Debian release, bookworm included) with the system call's
 * number for this architecture. Both fail rather than fall back to two renames when the
 * filesystem cannot exchange (EINVAL) or the paths are on two filesystems (EXDEV).
 *
 * Kept to node's own modules: the bundled file-sync receiver (src/sync/bundle.ts) uses it, and so
 * does the air-gap import (src/airgap/import.ts).
 */
import { spawnSync } from 'node:child_process';

/** renameat2's number per node architecture (asm-generic for arm64 and riscv64). */
const RENAMEAT2: Partial<Record<string, number>> = { x64: 316, arm64: 276, riscv64: 276, ia32: 353, ppc64: 357, s390x: 347 };
const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;

/** Which way exchangeDirs took (tests: both are run). */
export type ExchangeTool = 'mv' | 'perl';

/** Swaps two existing directories (or files) on one filesystem, atomically; throws naming both paths and the reason. */
export function exchangeDirs(a: string, b: string, only?: ExchangeTool): ExchangeTool {
  let mvError = '';
  if (only !== 'perl') {
    const mv = spawnSync('mv', ['--exchange', '--no-target-directory', '--', a, b], { encoding: 'utf8' });
    if (mv.status === 0) return 'mv';
    mvError = (mv.stderr || mv.error?.message || `exit ${mv.status}`).trim();
    // Any error but "no such option" is the exchange's own (EXDEV, EINVAL, ENOENT): no second try.
    if (only === 'mv' || !/unrecognized option|invalid option|unknown option/.test(mvError)) throw new Error(`cannot exchange ${a} and ${b}: ${mvError}`);
  }
  const nr = RENAMEAT2[process.arch];
  if (nr === undefined)
    throw new Error(`cannot exchange ${a} and ${b}: mv has no --exchange (${mvError}) and renameat2's number on ${process.arch} is not known here`);
  const script = `syscall(${nr}, ${AT_FDCWD}, $ARGV[0], ${AT_FDCWD}, $ARGV[1], ${RENAME_EXCHANGE}) == 0 or die "renameat2: $!\\n"`;
  const pl = spawnSync('perl', ['-e', script, a, b], { encoding: 'utf8' });
  if (pl.status === 0) return 'perl';
  throw new Error(
    `cannot exchange ${a} and ${b}: ${(pl.stderr || pl.error?.message || `perl exited ${pl.status}`).trim()}${mvError ? ` (mv: ${mvError})` : ''}`,
  );
}
