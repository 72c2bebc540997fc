/** Helpers for tests only. */
import assert from 'node:assert/strict';
import { VigilError } from './errors.ts';

/** The VigilError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function rejectionOf(p: Promise<unknown>): Promise<VigilError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VigilError, `expected a VigilError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a VigilError');
}
