import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Action } from './decide.ts';
import { execute, type Effects } from './execute.ts';

/** Records what would be done; `leads` and `epoch` are what the observer would find when it asks. */
function fake(o: { leadsFor?: number; epoch?: number | null | 'no answer'; casOk?: boolean } = {}) {
  const done: string[] = [];
  const logged: string[] = [];
  let checks = 0;
  const fx: Effects = {
    stillLeads: () => ++checks <= (o.leadsFor ?? Infinity),
    currentEpoch: async () => {
      if (o.epoch === 'no answer') throw new Error('etcd did not answer');
      return o.epoch === undefined ? 5 : o.epoch;
    },
    activate: async (a) => (done.push(`activate ${a.node}@${a.epoch}`), o.casOk ?? true),
    fence: async (node, epoch) => void done.push(`fence ${node}@${epoch}`),
    unfence: async (node) => void done.push(`unfence ${node}`),
    markUp: async (node, epoch) => void done.push(`mark-up ${node}@${epoch}`),
    dbSwitchover: (from, to) => void done.push(`db-switchover ${from}->${to}`),
    event: async (e) => void done.push(`event ${e.type}`),
    answer: async (a) => void done.push(`answer ${a.id}`),
    log: (event) => void logged.push(event),
  };
  return { fx, done, logged };
}

const activate: Action = { kind: 'activate', node: 'app2', epoch: 6, expectEpoch: 5, reason: 'failover' };
const fence = (node: string, epoch: number): Action => ({ kind: 'fence', node, epoch, reason: 'not active' });
const event: Action = { kind: 'event', event: { type: 'node-lost', message: 'gone', node: 'app1' } };

test('carries out every action in order while it leads and the record is where it was', async () => {
  const f = fake();
  await execute(f.fx, 5, [fence('app1', 5), fence('app3', 5), { kind: 'unfence', node: 'app2', epoch: 5 }, event]);
  assert.deepEqual(f.done, ['fence app1@5', 'fence app3@5', 'unfence app2', 'event node-lost']);
});

test('leadership is checked before every action: a leader deposed in the middle of its list stops there', async () => {
  const f = fake({ leadsFor: 2 });
  await execute(f.fx, 5, [fence('app1', 5), fence('app3', 5), { kind: 'unfence', node: 'app2', epoch: 5 }, event]);
  assert.deepEqual(f.done, ['fence app1@5', 'fence app3@5']);
  assert.ok(f.logged.includes('actions-dropped'));
});

test('no fence, MAINT or READY once the record moved to another epoch (another observer acted meanwhile)', async () => {
  const f = fake({ epoch: 6 });
  await execute(f.fx, 5, [fence('app1', 5), { kind: 'unfence', node: 'app2', epoch: 5 }, event]);
  assert.deepEqual(f.done, ['event node-lost'], 'the fencing is dropped; the event, a fact seen, still goes');
  assert.ok(f.logged.includes('fencing-dropped'));
});

test('UP at once (mark-up) only while the record is at its epoch, like READY', async () => {
  const at = fake();
  await execute(at.fx, 5, [{ kind: 'mark-up', node: 'app2', epoch: 5 }, event]);
  assert.deepEqual(at.done, ['mark-up app2@5', 'event node-lost']);
  const moved = fake({ epoch: 6 });
  await execute(moved.fx, 5, [{ kind: 'mark-up', node: 'app2', epoch: 5 }, event]);
  assert.deepEqual(moved.done, ['event node-lost'], 'the record moved: no UP for the machine it left');
});

test('no fencing when etcd cannot confirm the epoch; it is decided again next tick', async () => {
  const f = fake({ epoch: 'no answer' });
  await execute(f.fx, 5, [fence('app1', 5), event]);
  assert.deepEqual(f.done, ['event node-lost']);
});

test("after this tick's own activation the fences go without reading the record again", async () => {
  const f = fake({ epoch: 'no answer' });
  await execute(f.fx, 5, [activate, fence('app1', 6), event]);
  assert.deepEqual(f.done, ['activate app2@6', 'fence app1@6', 'event node-lost']);
});

test('a lost compare-and-swap ends the list; an activation decided on another epoch is not tried', async () => {
  const lost = fake({ casOk: false });
  await execute(lost.fx, 5, [activate, fence('app1', 6), event]);
  assert.deepEqual(lost.done, ['activate app2@6']);
  const stale = fake();
  await execute(stale.fx, 4, [activate, fence('app1', 6)]);
  assert.deepEqual(stale.done, []);
});
