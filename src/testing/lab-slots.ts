/**
 * Lab slots for the test suite: the lab ids (`VIGIL_TEST_LAB_SLOTS`, e.g. `0,1`) that lab test
 * files running side by side take one each (test/lab/slot.ts, preloaded by scripts/test.sh), so two
 * of them never share a lab (bridge, subnet, namespaces, state: src/lab/paths.ts).
 *
 * A slot is a file created exclusively (`wx`) holding its owner's pid; one whose owner no longer
 * runs (killed) is taken over. Only the test runner's own children use it, and only by pid: nothing
 * is killed here.
 */
import { mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SLOT_DIR = join(tmpdir(), 'vigil-test-lab-slots');

/** Whether this process runs a lab test file (test/lab/*.test.ts). */
export function isLabTestFile(path: string | undefined): boolean {
  return path !== undefined && /[/\\]test[/\\]lab[/\\][^/\\]+\.test\.ts$/.test(path);
}

/** The lab ids of `VIGIL_TEST_LAB_SLOTS`, checked: digits 0 to 9, at least one. */
export function parseSlots(raw: string): string[] {
  const ids = raw.split(',').map((s) => s.trim());
  if (ids.length === 0 || ids.some((id) => !/^\d$/.test(id)))
    throw new Error(`VIGIL_TEST_LAB_SLOTS=${raw}: must list lab ids, digits 0 to 9 separated by commas (scripts/test.sh sets it)`);
  return ids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes a free slot (or one whose owner is gone); null when every slot is held by a running process. */
export function claimSlot(ids: string[], dir = SLOT_DIR, pid = process.pid): string | null {
  mkdirSync(dir, { recursive: true });
  for (const id of ids) {
    const file = join(dir, `${id}.lock`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx');
        writeSync(fd, String(pid));
        closeSync(fd);
        return id;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number(readFileSync(file, 'utf8').trim());
        if (Number.isInteger(owner) && owner > 0 && alive(owner)) break; // held: the next id
        unlinkSync(file); // its owner ended without giving it back: take it over
      }
    }
  }
  return null;
}

/** Gives a slot back, if this process still holds it. */
export function releaseSlot(id: string, dir = SLOT_DIR, pid = process.pid): void {
  const file = join(dir, `${id}.lock`);
  try {
    if (readFileSync(file, 'utf8').trim() === String(pid)) unlinkSync(file);
  } catch {
    // already gone
  }
}
