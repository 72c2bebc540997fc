import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoredEvent } from '../etcd/store.ts';
import { buildTimeline } from './timeline.ts';

const T0 = Date.parse('2026-12-07T10:00:00.000Z');
let seq = 0;
const ev = (s: number, e: Omit<StoredEvent, 'seq' | 'at'>): StoredEvent => ({ seq: ++seq, at: new Date(T0 + s * 1000).toISOString(), ...e }) as StoredEvent;

/** A failover as the observer tells it: node lost, the move, fence, activation, its end with phases. */
function failover(at: number, from: string, to: string, epoch: number): StoredEvent[] {
  return [
    ev(at, { type: 'node-lost', node: from, message: `${from} stopped answering` }),
    ev(at + 2, { type: 'failover', node: to, epoch, message: `failover: ${from} failed`, details: { from } }),
    ev(at + 2, { type: 'fence', node: from, epoch, message: `${from} fenced` }),
    ev(at + 3, { type: 'activate', node: to, epoch, message: `${to} serves at epoch ${epoch}` }),
    ev(at + 4, {
      type: 'failover-done',
      node: to,
      epoch,
      message: 'done',
      // The observer's object has fence first (its order of discovery); the page shows them in the order they happen.
      details: { kind: 'failover', result: 'success', totalMs: 4200, phasesMs: { fence: 150, detect: 2000, app_start: 1500, proxy_switch: 550 } },
    }),
  ];
}

describe('the timeline', () => {
  it('a failover is one incident with its phases, its database switch merged in, newest incident first', () => {
    seq = 0;
    const events = [
      ev(0, { type: 'bootstrap', node: 'app1', epoch: 1, message: 'app1 first active', details: { from: null } }),
      ev(1, { type: 'activate', node: 'app1', epoch: 1, message: 'app1 serves at epoch 1' }),
      ...failover(600, 'app1', 'app2', 2),
    ];
    const history = [
      { timeline: 1, lsn: 100, reason: 'no recovery target specified', at: null, newLeader: null },
      { timeline: 2, lsn: 200, reason: 'no recovery target specified', at: new Date(T0 + 601_500).toISOString(), newLeader: 'db2' },
    ];
    const t = buildTimeline(events, history);
    assert.equal(t.incidents.length, 2);
    const [fo, boot] = t.incidents;
    assert.equal(boot!.title, 'Cluster started: app1 active at epoch 1');
    assert.equal(fo!.title, 'Failover app1 → app2 (epoch 2, 4.2 s)');
    assert.equal(fo!.level, 'ok', 'a failover that ended well settles its incident');
    assert.deepEqual(
      fo!.items.map((i) => i.type),
      ['node-lost', 'db-promoted', 'failover', 'fence', 'activate', 'failover-done'],
      "the database's switch sits at its time among Vigil's events",
    );
    assert.equal(fo!.items[1]!.message, 'db2 became the database primary: timeline 2 ended (no recovery target specified)');
    assert.deepEqual(fo!.outcome, {
      kind: 'failover',
      result: 'success',
      totalMs: 4200,
      phases: [
        { phase: 'detect', ms: 2000 },
        { phase: 'fence', ms: 150 },
        { phase: 'app_start', ms: 1500 },
        { phase: 'proxy_switch', ms: 550 },
      ],
    });
    assert.equal(fo!.id, fo!.items[0]!.id);
    assert.deepEqual(t.database, { read: true });
  });

  it('a failover under way, or one that failed, is not settled', () => {
    seq = 0;
    const under = failover(0, 'app1', 'app2', 2).slice(0, 4);
    const t = buildTimeline(under, []);
    assert.equal(t.incidents[0]!.title, 'Failover app1 → app2 (epoch 2, under way)');
    assert.equal(t.incidents[0]!.level, 'warn');
    seq = 0;
    const failed = failover(0, 'app1', 'app2', 2);
    failed[4]!.details = { kind: 'failover', result: 'failed', totalMs: 61000, phasesMs: { detect: 2000, app_start: 59000 } };
    const f = buildTimeline(failed, []).incidents[0]!;
    assert.equal(f.title, 'Failover app1 → app2 (epoch 2, failed)');
    assert.equal(f.level, 'bad');
  });

  it('categories keep apart; a gap longer than gapMs opens a new incident', () => {
    seq = 0;
    const events = [
      ev(0, { type: 'maintenance-on', message: 'maintenance on' }),
      ev(5, { type: 'login-failed', message: 'refused' }),
      ev(6, { type: 'login-failed', message: 'refused' }),
      ev(7, { type: 'action-refused', message: 'viewer may not act' }),
      ev(30, { type: 'maintenance-off', message: 'maintenance off' }),
      ev(1000, { type: 'sync-failed', node: 'app2', message: 'disk full' }),
      ev(1010, { type: 'sync-recovered', node: 'app2', message: 'works again' }),
      ev(5000, { type: 'sync-failed', node: 'app2', message: 'unreachable' }),
      ev(5001, { type: 'failover', node: 'app1', epoch: 3, message: 'no failover: app1 down and no standby is healthy', details: { outcome: 'no-candidate' } }),
    ];
    const t = buildTimeline(events, [], { gapMs: 120_000 });
    assert.deepEqual(
      t.incidents.map((i) => [i.category, i.title, i.level, i.items.length]),
      [
        ['failover', 'No failover possible: no standby is healthy', 'bad', 1],
        ['file-sync', 'File sync failing', 'bad', 1],
        ['file-sync', 'File sync trouble (recovered)', 'ok', 2],
        ['access', '2 refused logins, 1 refused action', 'warn', 3],
        ['maintenance', 'Maintenance window (ended)', 'ok', 2],
      ],
    );
  });

  it('an acknowledgement attaches to the incident holding the item it names, even once that item is no longer first', () => {
    seq = 0;
    const events = failover(0, 'app1', 'app2', 2);
    const ack = ev(100, {
      type: 'incident-acknowledged',
      message: 'ack',
      details: { incident: events[2]!.seq ? `e${events[2]!.seq}` : '', by: 'alice', comment: 'disk replaced' },
    });
    const stray = ev(101, { type: 'incident-acknowledged', message: 'ack', details: { incident: 'e999', by: 'bob', comment: 'gone' } });
    const t = buildTimeline([...events, ack, stray], []);
    assert.equal(t.incidents.length, 1, 'acknowledgements are not items');
    assert.deepEqual(t.incidents[0]!.acks, [{ by: 'alice', at: ack.at, comment: 'disk replaced' }]);
  });

  it('one move and one promotion per incident: a failover soon after another, or a switchover, opens its own; the old machine coming back or a promotion after the move does not', () => {
    seq = 0;
    const first = failover(0, 'app1', 'app2', 2);
    const back = ev(20, { type: 'node-back', node: 'app1', message: 'app1 answers again' });
    const second = failover(40, 'app2', 'app1', 3);
    const sw = [
      ev(70, { type: 'switchover', node: 'app2', epoch: 4, message: 'switchover', details: { from: 'app1' } }),
      ev(71, { type: 'activate', node: 'app2', epoch: 4, message: 'app2 serves at epoch 4' }),
    ];
    const history = [
      // The first failover's promotion comes after its app move; the switchover's before.
      { timeline: 4, lsn: 1, reason: 'no recovery target specified', at: new Date(T0 + 3_500).toISOString(), newLeader: 'db2' },
      { timeline: 5, lsn: 2, reason: 'switchover', at: new Date(T0 + 69_500).toISOString(), newLeader: 'db2' },
    ];
    const t = buildTimeline([...first, back, ...second, ...sw], history);
    assert.deepEqual(
      t.incidents.map((i) => [i.title, i.items.map((x) => x.type).join(' ')]),
      [
        ['Switchover app1 → app2 (epoch 4, under way)', 'db-promoted switchover activate'],
        ['Failover app2 → app1 (epoch 3, 4.2 s)', 'node-lost failover fence activate failover-done'],
        ['Failover app1 → app2 (epoch 2, 4.2 s)', 'node-lost failover fence activate db-promoted failover-done node-back'],
      ],
    );
  });

  it("an action asked for from the dashboard: a switchover's joins its move (a new incident after an earlier move), maintenance's joins the maintenance window", () => {
    seq = 0;
    const first = failover(0, 'app1', 'app2', 2);
    const events = [
      ...first,
      ev(30, { type: 'action-requested', message: 'ann asked for switchover', details: { action: 'switchover', to: 'app1' } }),
      ev(32, { type: 'switchover', node: 'app1', epoch: 3, message: 'switchover', details: { from: 'app2' } }),
      ev(100, { type: 'action-requested', message: 'ann asked for maintenance-on', details: { action: 'maintenance-on' } }),
      ev(100, { type: 'maintenance-on', message: 'maintenance started' }),
    ];
    const t = buildTimeline(events, []);
    assert.deepEqual(
      t.incidents.map((i) => [i.category, i.title, i.items.map((x) => x.type).join(' ')]),
      [
        ['maintenance', 'Maintenance on', 'action-requested maintenance-on'],
        ['failover', 'Switchover app2 → app1 (epoch 3, under way)', 'action-requested switchover'],
        ['failover', 'Failover app1 → app2 (epoch 2, 4.2 s)', 'node-lost failover fence activate failover-done'],
      ],
    );
  });

  it("says when the database's history could not be read", () => {
    assert.deepEqual(buildTimeline([], [], { databaseError: 'no db machine answered' }).database, { read: false, error: 'no db machine answered' });
  });

  it('doctor runs from the dashboard are their own incidents, coloured by what they found', () => {
    const t = buildTimeline(
      [
        ev(0, { type: 'doctor-run', message: 'doctor run from the dashboard by ann: 0 failures, 0 warnings', details: { failures: 0, warnings: 0 } }),
        ev(600, { type: 'doctor-run', message: 'doctor run from the dashboard by ann: 1 failure, 0 warnings', details: { failures: 1, warnings: 0 } }),
      ],
      [],
    );
    assert.deepEqual(
      t.incidents.map((i) => [i.category, i.level, i.title]),
      [
        ['doctor', 'bad', 'doctor run from the dashboard by ann: 1 failure, 0 warnings'],
        ['doctor', 'ok', 'doctor run from the dashboard by ann: 0 failures, 0 warnings'],
      ],
    );
  });
});
