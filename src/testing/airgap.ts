/** Fixtures for the air gap's status in unit tests. */
import type { PatchDirState } from '../model/ha.ts';

/** An app machine's patch directory holding bundle `sequence`, matching its manifest unless `over` says otherwise. */
export function patchDirHeld(sequence: number, over: Partial<PatchDirState> = {}): PatchDirState {
  return {
    dir: '/var/lib/vigil/app/patches',
    sequence,
    bundleId: 'b'.repeat(32),
    manifestSha256: 'a'.repeat(64),
    files: 2,
    missing: [],
    extra: [],
    different: [],
    counts: { missing: 0, extra: 0, different: 0 },
    matches: true,
    error: null,
    checkedAt: '2026-12-07T12:00:00Z',
    ...over,
  };
}
