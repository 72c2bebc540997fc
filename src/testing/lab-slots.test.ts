import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { claimSlot, isLabTestFile, parseSlots, releaseSlot } from './lab-slots.ts';

test('only lab test files take a slot', () => {
  assert.equal(isLabTestFile('/ci/work/test/lab/db-release.test.ts'), true);
  assert.equal(isLabTestFile('/ci/work/src/lab/topology.test.ts'), false);
  assert.equal(isLabTestFile('/ci/work/test/lab/journal.ts'), false);
  assert.equal(isLabTestFile(undefined), false);
});

test('the slots are lab ids, checked', () => {
  assert.deepEqual(parseSlots('0,1'), ['0', '1']);
  assert.throws(() => parseSlots('0,12'), /VIGIL_TEST_LAB_SLOTS=0,12: must list lab ids, digits 0 to 9/);
  assert.throws(() => parseSlots(''), /must list lab ids/);
});

test('two processes never hold one slot; a slot comes back when released', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-slots-'));
  try {
    assert.equal(claimSlot(['0', '1'], dir, process.pid), '0');
    // Another running process (this one's parent) asks: the next slot.
    assert.equal(claimSlot(['0', '1'], dir, process.ppid), '1');
    assert.equal(claimSlot(['0', '1'], dir, process.pid), null, 'both held by running processes');
    releaseSlot('0', dir, process.ppid); // not its slot: kept
    assert.equal(claimSlot(['0', '1'], dir, process.pid), null);
    releaseSlot('0', dir, process.pid);
    assert.equal(claimSlot(['0', '1'], dir, process.pid), '0');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a slot whose owner ended without giving it back is taken over', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-slots-'));
  try {
    // A pid that no longer runs: a child that has exited.
    const child = spawn(process.execPath, ['-e', '']);
    const gone = child.pid!;
    await new Promise((r) => child.on('exit', r));
    await writeFile(join(dir, '0.lock'), String(gone));
    assert.equal(claimSlot(['0'], dir, process.pid), '0');
    assert.deepEqual(await readdir(dir), ['0.lock']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
