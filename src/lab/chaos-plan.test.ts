import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  FAULT_KINDS,
  SINGLE_KINDS,
  backAfter,
  formatReport,
  formatResult,
  mulberry32,
  parseKinds,
  percentile,
  planSteps,
  summarize,
  targetsOf,
  type FaultResult,
} from './chaos-plan.ts';

describe('chaos plan', () => {
  it('mulberry32: the same seed gives the same numbers, another seed others, all in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(
      Array.from({ length: 1000 }, () => b()),
      xs,
    );
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const c = mulberry32(43);
    assert.notDeepEqual(
      Array.from({ length: 10 }, () => c()),
      xs.slice(0, 10),
    );
    // Spread: each tenth of [0, 1) gets some.
    for (let d = 0; d < 10; d++) assert.ok(xs.filter((x) => Math.floor(x * 10) === d).length > 50);
  });

  it('a seed gives the same schedule every time; another seed another one', () => {
    const o = { kinds: FAULT_KINDS };
    const s1 = planSteps(7, o, 50);
    assert.deepEqual(planSteps(7, o, 50), s1);
    assert.notDeepEqual(planSteps(8, o, 50), s1);
    assert.deepEqual(
      s1.map((s) => s.n),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
  });

  it('steps use only the kinds asked for, targets that fit each kind, holds within the range', () => {
    const steps = planSteps(1, { kinds: ['stop-agent', 'two-at-once', 'partition'], holdMs: [1000, 3000] }, 200);
    assert.deepEqual(new Set(steps.map((s) => s.kind)), new Set(['stop-agent', 'two-at-once', 'partition']));
    for (const s of steps) {
      assert.equal(s.faults.length, s.kind === 'two-at-once' ? 2 : 1);
      for (const f of s.faults) {
        assert.ok(targetsOf(f.kind).includes(f.target), `${f.kind} on ${f.target}`);
        assert.ok(f.holdMs >= 1000 && f.holdMs <= 3000);
        assert.notEqual(f.kind, 'observer-mid-failover');
      }
      if (s.kind === 'two-at-once') {
        assert.ok(s.offsetMs >= 0 && s.offsetMs <= s.faults[0]!.holdMs / 2, 'the second starts while the first holds');
        if (targetsOf(s.faults[1]!.kind).length > 1) assert.notEqual(s.faults[1]!.target, s.faults[0]!.target);
      } else assert.equal(s.faults[0]!.kind, s.kind);
    }
    // Two at once overlaps only kinds asked for.
    for (const s of steps.filter((x) => x.kind === 'two-at-once')) for (const f of s.faults) assert.ok(['stop-agent', 'partition'].includes(f.kind), f.kind);
    // Every single kind has a target.
    for (const k of SINGLE_KINDS) assert.ok(targetsOf(k).length > 0, k);
  });

  it('HAProxy faults and a cut from one app machine hit a proxy machine; a full disk a standby; packet loss and latency any machine that serves', () => {
    for (const k of ['kill-haproxy', 'stop-haproxy', 'proxy-cut-app'] as const) assert.deepEqual(targetsOf(k), ['proxy'], k);
    assert.deepEqual(targetsOf('disk-full'), ['standby-app']);
    assert.deepEqual(new Set(targetsOf('packet-loss')), new Set(['active-app', 'standby-app', 'db-primary', 'db-standby', 'proxy']));
    assert.deepEqual(new Set(targetsOf('latency')), new Set(['active-app', 'standby-app', 'db-primary', 'db-standby', 'proxy']));
    assert.deepEqual(targetsOf('kill-observer'), ['observer']);
  });

  it('parses --faults and --except: all by default, names checked', () => {
    assert.deepEqual(parseKinds(undefined), [...FAULT_KINDS]);
    assert.deepEqual(parseKinds('kill-app, stop-etcd,kill-app'), ['kill-app', 'stop-etcd']);
    assert.throws(() => parseKinds('kill-app,netem'), /unknown fault kind\(s\): netem/);
    assert.deepEqual(
      parseKinds(undefined, 'kill-patroni'),
      FAULT_KINDS.filter((k) => k !== 'kill-patroni'),
    );
    assert.deepEqual(parseKinds('kill-app,stop-app', 'stop-app'), ['kill-app']);
    assert.throws(() => parseKinds('kill-app', 'kill-app'), /no fault kind left/);
    assert.throws(() => parseKinds(undefined, 'kil-app'), /unknown fault kind\(s\): kil-app/);
  });

  it('percentile: nearest rank', () => {
    assert.equal(percentile([], 50), undefined);
    assert.equal(percentile([5], 95), 5);
    assert.equal(percentile([4, 1, 3, 2], 50), 2);
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    assert.equal(percentile(xs, 50), 50);
    assert.equal(percentile(xs, 95), 95);
    assert.equal(percentile(xs, 100), 100);
    assert.equal(percentile(xs, 0), 1);
  });

  it('back after: 0 without a failure in the window, else the first acknowledgement after its last failure', () => {
    assert.equal(backAfter(100, 200, [50, 250], [110, 120]), 0);
    assert.equal(backAfter(100, 200, [120, 150, 180], [110, 130, 190, 210]), 90);
    assert.equal(backAfter(100, 200, [150], [120]), undefined);
  });

  it('summarizes per kind and formats a markdown table', () => {
    const r = (kind: FaultResult['kind'], http: number | null, db: number | null, extra: Partial<FaultResult> = {}): FaultResult => ({
      n: 1,
      kind,
      what: `${kind} on app1 (active-app)`,
      heldMs: 3000,
      httpBackMs: http,
      dbBackMs: db,
      violations: 0,
      lostHttp: 0,
      lostDb: 0,
      ...extra,
    });
    const results = [r('kill-app', 4000, 0), r('kill-app', 6000, 0), r('partition', 9000, 12_000, { violations: 1, lostDb: 2 }), r('kill-app', null, 0)];
    const summary = summarize(results);
    assert.deepEqual(
      summary.map((s) => s.kind),
      ['kill-app', 'partition'],
    );
    assert.deepEqual(summary[0]!.http, { p50: 4000, p95: 6000, max: 6000, notBack: 1 });
    assert.equal(summary[1]!.violations, 1);
    assert.equal(summary[1]!.lost, 2);
    const text = formatReport(summary, { seed: 9, topology: 'pair', minutes: 3.04, faults: 4, violations: 1, lostHttp: 0, lostDb: 2, errors: 0 });
    assert.match(text, /^chaos: seed 9, topology pair, 4 fault\(s\) in 3\.0 min; 1 violation\(s\), 2 write\(s\) lost/);
    assert.match(text, /\| kill-app \| 3 \| 4\.0 \/ 6\.0 \/ 6\.0 \(not back ×1\) \| 0\.0 \/ 0\.0 \/ 0\.0 \| 0 \| 0 \|/);
    assert.match(text, /\| partition \| 1 \| 9\.0 \/ 9\.0 \/ 9\.0 \| 12\.0 \/ 12\.0 \/ 12\.0 \| 1 \| 2 \|/);
    assert.match(
      formatResult(results[2]!, 65_000),
      /^\[\+65\.0s\] #1 partition: partition on app1 \(active-app\); held 3\.0 s; :80 back after 9\.0 s, :5000 after 12\.0 s; 1 violation\(s\), 2 lost$/,
    );
  });
});
