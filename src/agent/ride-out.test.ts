import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rideOutAnswer, rideOutMarginMs, rideOutUntil, type PeerView } from './ride-out.ts';

const peer = (over: Partial<PeerView> = {}): PeerView => ({
  node: 'app2',
  active: false,
  services: [{ name: 'nginx', running: false }],
  toldActive: false,
  record: { node: 'app1', epoch: 4, since: '', reason: 'test' },
  highestEpoch: 4,
  ...over,
});
const ask = { node: 'app1', epoch: 4 };

test('a standby whose record names the asker at its epoch says yes', () => {
  assert.deepEqual(rideOutAnswer(peer(), ask), { granted: true });
});

test('a warm standby running only its `every` services says yes', () => {
  assert.deepEqual(rideOutAnswer(peer({ services: [{ name: 'app', running: true, runsOn: 'every' }] }), ask), { granted: true });
});

test('refusals: active itself, an active-only service running, a warm service told active, a newer epoch, another record, none', () => {
  const cases: [Partial<PeerView>, RegExp][] = [
    [{ active: true }, /app2 is active itself/],
    [{ services: [{ name: 'nginx', running: true }] }, /runs what only the active machine runs: nginx/],
    [{ services: [{ name: 'app', running: true, runsOn: 'every' }], toldActive: true }, /runs what only the active machine runs: app/],
    // The observer has started a failover: its first step is the record at epoch 5.
    [{ highestEpoch: 5 }, /has seen epoch 5, newer than 4/],
    [{ record: { node: 'app2', epoch: 5, since: '', reason: 'failover' }, highestEpoch: 5 }, /epoch 5/],
    [{ record: { node: 'app3', epoch: 4, since: '', reason: 'test' } }, /record names app3 at epoch 4, not app1 at 4/],
    [{ record: { node: 'app1', epoch: 3, since: '', reason: 'test' }, highestEpoch: 3 }, /names app1 at epoch 3, not app1 at 4/],
    [{ record: null, highestEpoch: 0 }, /confirmed no active record/],
  ];
  for (const [over, reason] of cases) {
    const a = rideOutAnswer(peer(over), ask);
    assert.equal(a.granted, false, JSON.stringify(over));
    assert.match((a as { reason: string }).reason, reason);
  }
  assert.equal(rideOutAnswer(peer(), { node: 'app2', epoch: 4 }).granted, false, 'a machine does not ask itself');
});

test('the window: every peer said yes, from the send time, one lease less the margin', () => {
  assert.equal(rideOutMarginMs(3000), 300);
  assert.equal(rideOutMarginMs(500), 100);
  const yes = (peer: string) => ({ peer, granted: true });
  assert.equal(rideOutUntil(['app2', 'app3'], [yes('app2'), yes('app3')], 1000, 3000), 1000 + 3000 - 300);
});

test('no window: one refusal, one peer without an answer, an answer from a machine not asked, no peer at all', () => {
  const yes = (peer: string) => ({ peer, granted: true });
  assert.equal(rideOutUntil(['app2', 'app3'], [yes('app2'), { peer: 'app3', granted: false, reason: 'no' }], 0, 3000), null);
  assert.equal(rideOutUntil(['app2', 'app3'], [yes('app2')], 0, 3000), null);
  assert.equal(rideOutUntil(['app2'], [yes('app9')], 0, 3000), null);
  assert.equal(rideOutUntil([], [], 0, 3000), null);
});
