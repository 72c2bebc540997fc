/**
 * Preloaded into every process of the test suite (scripts/test.sh: `node --import tsx --import
 * ./test/lab/slot.ts --test --test-concurrency=2`). A lab test file takes one of the suite's lab
 * ids (src/testing/lab-slots.ts) before any lab module reads `VIGIL_LAB_ID`, and gives it back when
 * its process ends: two lab test files run side by side, each on a lab of its own, and unit test
 * files take none.
 */
import { SLOT_DIR, claimSlot, isLabTestFile, parseSlots, releaseSlot } from '../../src/testing/lab-slots.ts';

const raw = process.env.VIGIL_TEST_LAB_SLOTS;
if (raw && isLabTestFile(process.argv[1])) {
  const ids = parseSlots(raw);
  let id = claimSlot(ids);
  // The runner starts at most --test-concurrency files at once, so a slot is free at once; wait
  // for one all the same, in case a lab test from another run holds one.
  const waitUntil = Date.now() + 30 * 60_000;
  while (id === null && Date.now() < waitUntil) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
    id = claimSlot(ids);
  }
  if (id === null) throw new Error(`no free lab among VIGIL_TEST_LAB_SLOTS=${raw} for ${process.argv[1]} after 30 minutes (see ${SLOT_DIR})`);
  const held = id;
  process.env.VIGIL_LAB_ID = held;
  process.on('exit', () => releaseSlot(held));
}
