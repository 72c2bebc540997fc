import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RESTART_GRACE_S, RESTART_MARK_FRESH_MS, restartGrace, type GraceDeps } from './restart-grace.ts';

/** The rule's inputs as plain values; the etcd and file parts are tested in src/etcd/store.test.ts and the lab (test/lab/apply.test.ts). */
function deps(o: { markAgeMs?: number | null; active?: boolean; extendFails?: boolean } = {}) {
  const calls: string[] = [];
  const d: GraceDeps = {
    markAgeMs: async () => (o.markAgeMs === undefined ? 1000 : o.markAgeMs),
    active: () => o.active ?? true,
    bootClockCs: async () => {
      calls.push('clock');
      return 50_000;
    },
    extendClaim: async (ttl) => {
      calls.push(`extend ${ttl}`);
      if (o.extendFails) throw new Error('etcd does not answer');
    },
    stamp: async (until) => void calls.push(`stamp ${until}`),
    log: (event) => void calls.push(`log ${event}`),
  };
  return { d, calls };
}

test("apply's fresh mark on an active machine: the claim gets the grace, then the stamp, counted from before the claim's lease", async () => {
  const { d, calls } = deps();
  assert.equal(await restartGrace(d), true);
  assert.deepEqual(calls, ['clock', `extend ${RESTART_GRACE_S}`, `stamp ${50_000 + RESTART_GRACE_S * 100}`, 'log restart-grace']);
});

test('no mark, a stale mark or a machine that is not active: nothing changes', async () => {
  for (const o of [{ markAgeMs: null }, { markAgeMs: RESTART_MARK_FRESH_MS + 1 }, { markAgeMs: -RESTART_MARK_FRESH_MS - 1 }, { active: false }]) {
    const { d, calls } = deps(o);
    assert.equal(await restartGrace(d), false, JSON.stringify(o));
    assert.deepEqual(calls, [], JSON.stringify(o));
  }
});

test('etcd does not take the longer claim: the stamp is not extended either (the application stops with the lease)', async () => {
  const { d, calls } = deps({ extendFails: true });
  assert.equal(await restartGrace(d), false);
  assert.deepEqual(calls, ['clock', `extend ${RESTART_GRACE_S}`, 'log restart-grace-failed']);
});
