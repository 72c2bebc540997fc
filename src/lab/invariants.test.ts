import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  breachesOf,
  evaluate,
  formatJobOverlap,
  formatRound,
  jobOverlaps,
  formatViolation,
  roundSkew,
  servedAfterTakeover,
  type AckedWrite,
  type JobRun,
  type Round,
  type Sample,
  type ServerSample,
} from './invariants.ts';

const app = (server: string, admin: ServerSample['admin'], op: ServerSample['op']): ServerSample => ({ backend: 'app', server, admin, op });
const pg = (server: string, op: ServerSample['op']): ServerSample => ({ backend: 'postgres', server, admin: 'ready', op });

/** A round at `t` ms: every sample sent at t+1 and answered at t+`lag`. */
function round(
  n: number,
  parts: Partial<Record<'proxy' | 'active' | 'role' | 'primary', string[]>>,
  opts: { servers?: ServerSample[]; lag?: number } = {},
): Round {
  const t = n * 50;
  const lag = opts.lag ?? 5;
  const s = (kind: Sample['kind'], target: string, more: Partial<Sample>): Sample => ({ kind, target, sentMs: t + 1, answeredMs: t + lag, ...more });
  const samples: Sample[] = [
    s('proxy', 'observer', { servers: opts.servers ?? [app('app1', 'ready', 'up'), app('app2', 'maint', 'down'), pg('db1', 'up'), pg('db2', 'down')] }),
  ];
  for (const m of ['app1', 'app2']) {
    samples.push(s('status', m, { active: (parts.active ?? ['app1']).includes(m), epoch: 3 }));
    const ok = (parts.role ?? ['app1']).includes(m);
    samples.push(s('role', m, { ok, status: ok ? 200 : 503 }));
    samples.push(s('app', m, { ok: m === 'app1', status: m === 'app1' ? 200 : undefined, ...(m === 'app1' ? {} : { error: 'ECONNREFUSED' }) }));
  }
  for (const m of ['db1', 'db2']) {
    const ok = (parts.primary ?? ['db1']).includes(m);
    samples.push(s('primary', m, { ok, status: ok ? 200 : 503 }));
  }
  return { n, startMs: t, samples };
}

describe('checker invariants', () => {
  it('a clean failover (app1 then app2, one at a time in every view) breaks nothing', () => {
    const rounds = [
      round(1, {}),
      round(2, { active: [], role: [] }, { servers: [app('app1', 'maint', 'down'), app('app2', 'maint', 'down')] }),
      round(3, { active: ['app2'], role: [] }, { servers: [app('app1', 'maint', 'down'), app('app2', 'ready', 'down')] }),
      round(4, { active: ['app2'], role: ['app2'] }, { servers: [app('app1', 'maint', 'down'), app('app2', 'ready', 'up')] }),
    ];
    assert.deepEqual(evaluate(rounds), []);
  });

  it('two servers UP and READY in one proxy snapshot is a violation with no skew', () => {
    const b = breachesOf(round(7, {}, { servers: [app('app2', 'ready', 'up'), app('app1', 'ready', 'up')] }));
    assert.deepEqual(b, [{ rule: 'proxy-two-up', round: 7, machines: ['app1', 'app2'], proxy: 'observer', skewMs: 0 }]);
  });

  it('a server UP but in MAINT or DRAIN, or READY but DOWN, does not count as serving', () => {
    for (const other of [app('app2', 'maint', 'up'), app('app2', 'drain', 'up'), app('app2', 'ready', 'down'), app('app2', 'ready', 'starting')])
      assert.deepEqual(breachesOf(round(1, {}, { servers: [app('app1', 'ready', 'up'), other] })), [], `${other.admin} ${other.op}`);
  });

  it('the :5000 backend with two servers UP is not an app overlap', () => {
    assert.deepEqual(breachesOf(round(1, {}, { servers: [app('app1', 'ready', 'up'), pg('db1', 'up'), pg('db2', 'up')] })), []);
  });

  it("two agents active, two roles 200, two primaries, proven by a yes inside the other machine's span of yes: each flagged", () => {
    const both = { active: ['app1', 'app2'], role: ['app1', 'app2'], primary: ['db1', 'db2'] };
    const routed = [app('app1', 'ready', 'up'), app('app2', 'maint', 'down'), pg('db1', 'up'), pg('db2', 'up')];
    const v = evaluate([round(3, {}), round(4, both, { servers: routed }), round(5, {})]);
    assert.deepEqual(
      v.map((x) => [x.rule, x.machines.join(','), x.firstRound, x.maxSkewMs]),
      [
        ['two-agents-active', 'app1,app2', 4, 4],
        ['two-roles-200', 'app1,app2', 4, 4],
        ['two-primaries', 'db1,db2', 4, 4],
      ],
    );
  });

  it('two primaries count only where a proxy routes :5000 to each: one DOWN in every proxy is no violation; no proxy read, nothing is excused', () => {
    const both = { primary: ['db1', 'db2'] };
    const db2Down = [app('app1', 'ready', 'up'), app('app2', 'maint', 'down'), pg('db1', 'up'), pg('db2', 'down')];
    assert.deepEqual(evaluate([round(3, both, { servers: db2Down }), round(4, both, { servers: db2Down }), round(5, both, { servers: db2Down })]), []);
    const unread = (n: number) => {
      const r = round(n, both);
      for (const x of r.samples) if (x.kind === 'proxy') Object.assign(x, { error: 'timeout', servers: undefined });
      return r;
    };
    assert.deepEqual(
      evaluate([unread(3), unread(4), unread(5)]).map((x) => x.rule),
      ['two-primaries'],
    );
  });

  it('two yes in one round with nothing around them prove nothing: the machines were asked at different instants', () => {
    // app1 stops, app2 starts, both inside one round's answers: a clean handover looks like this too.
    const r = round(4, { active: ['app2'], role: ['app2'] });
    for (const x of r.samples) if (x.target === 'app1' && (x.kind === 'status' || x.kind === 'role')) Object.assign(x, { active: true, ok: true, status: 200 });
    assert.deepEqual(evaluate([round(3, { active: ['app1'], role: ['app1'] }), r, round(5, { active: ['app2'], role: ['app2'] })]), []);
  });

  it('true in consecutive rounds but never in the same one is not an overlap', () => {
    const rounds = [
      round(1, { active: ['app1'], role: ['app1'] }),
      round(2, { active: ['app2'], role: ['app2'] }),
      round(3, { active: ['app1'], role: ['app1'] }),
    ];
    assert.deepEqual(evaluate(rounds), []);
  });

  it('a sample that did not answer is never true', () => {
    const r = round(1, { role: ['app1', 'app2'] });
    for (const s of r.samples) if (s.kind === 'role' && s.target === 'app2') s.error = 'timeout';
    assert.deepEqual(breachesOf(r), []);
  });

  it('consecutive rounds of one breach are one violation; a gap starts a new one', () => {
    const two = { role: ['app1', 'app2'] };
    // app1 says yes throughout; app2's yes in rounds 2-4 and 7 fall inside it. Round 9, the last
    // one, has no later yes of app1 to close the span around it: not proven.
    const rounds = [
      round(1, {}),
      round(2, two),
      round(3, two),
      round(4, two, { lag: 40 }),
      round(5, {}),
      round(6, {}),
      round(7, two),
      round(8, {}),
      round(9, two),
    ];
    assert.deepEqual(
      evaluate(rounds).map((x) => [x.rule, x.firstRound, x.lastRound, x.rounds, x.maxSkewMs]),
      [
        ['two-roles-200', 2, 4, 3, 39],
        ['two-roles-200', 7, 7, 1, 4],
      ],
    );
  });

  it('the timeline names the rule, the machines, the skew, and each sample with its send and answer times', () => {
    const rounds = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => round(n, n === 5 ? { role: ['app1', 'app2'] } : {}));
    const [v] = evaluate(rounds);
    const text = formatViolation(v!, rounds, 0, 2);
    const lines = text.split('\n');
    assert.equal(
      lines[0],
      "VIOLATION: two app machines' /role answering 200 at once: app1 and app2, rounds 5..5 (1 round, from +0.250s; sampling skew up to 4 ms)",
    );
    assert.deepEqual(
      lines.filter((l) => /round \d/.test(l) && !l.startsWith('VIOLATION')).map((l) => l.trim().split(' (')[0]),
      ['round 3 at +0.150s', 'round 4 at +0.200s', '>> round 5 at +0.250s', 'round 6 at +0.300s', 'round 7 at +0.350s'],
    );
    assert.ok(lines.includes('      agent /role       app2       200 (yes)  [sent +1 ms, answered +5 ms]'), text);
    assert.ok(
      lines.includes(
        '      proxy             observer   app[app1 UP READY, app2 DOWN MAINT] postgres[db1 UP READY, db2 DOWN READY]  [sent +1 ms, answered +5 ms]',
      ),
      text,
    );
    assert.ok(lines.includes('      app direct        app2       no answer (ECONNREFUSED)  [sent +1 ms, answered +5 ms]'), text);
    assert.ok(lines.includes('      agent /status     app1       ACTIVE epoch 3  [sent +1 ms, answered +5 ms]'), text);
  });

  it('a long violation shows the rounds around its start and its end, and how many between', () => {
    const routed = [app('app1', 'ready', 'up'), app('app2', 'maint', 'down'), pg('db1', 'up'), pg('db2', 'up')];
    const rounds = Array.from({ length: 30 }, (_, i) => round(i + 1, i >= 9 && i <= 19 ? { primary: ['db1', 'db2'] } : {}, { servers: routed }));
    const [v] = evaluate(rounds);
    const text = formatViolation(v!, rounds, 0, 1);
    assert.match(text, /rounds 10\.\.20 \(11 rounds/);
    assert.match(text, /\.\.\. 7 rounds \.\.\./);
    assert.equal(text.split('\n').filter((l) => l.includes('>> round')).length, 4);
  });

  it('a round is printed header first, samples ordered by kind then machine', () => {
    const lines = formatRound(round(2, {}), 0);
    assert.equal(lines[0], '  round 2 at +0.100s (samples sent to answered within 4 ms)');
    assert.deepEqual(
      lines.slice(1).map((l) =>
        l
          .trim()
          .split(/\s{2,}/)
          .slice(0, 2)
          .join(' '),
      ),
      [
        'proxy observer',
        'agent /status app1',
        'agent /status app2',
        'agent /role app1',
        'agent /role app2',
        'app direct app1',
        'app direct app2',
        'patroni /primary db1',
        'patroni /primary db2',
      ],
    );
  });
});

describe('round skew', () => {
  it("counts answered samples only: a sample that timed out holds no fact and does not widen the round's skew", () => {
    const r = round(1, {}, { lag: 20 });
    r.samples[0] = { ...r.samples[0]!, answeredMs: r.startMs + 401, error: 'timeout' };
    assert.deepEqual(roundSkew([r]), { medianMs: 19, maxMs: 19 });
    assert.deepEqual(roundSkew([]), { medianMs: 0, maxMs: 0 });
  });
});

describe('writes served after a takeover', () => {
  const w = (id: number, node: string, ackMs: number): AckedWrite => ({ writer: 'w1', id, sentMs: ackMs - 10, ackMs, node });
  it('the old machine acknowledging a write after the new one served is flagged; before it, not', () => {
    const writes = [w(1, 'app1', 100), w(2, 'app1', 200), w(3, 'app2', 300), w(4, 'app1', 310), w(5, 'app2', 400)];
    assert.deepEqual(
      servedAfterTakeover(writes, 150, 'app2').map((x) => x.id),
      [4],
    );
    assert.deepEqual(servedAfterTakeover(writes.slice(0, 3), 150, 'app2'), []);
    assert.deepEqual(servedAfterTakeover(writes, 150, 'app3'), [], 'the new machine has not served yet');
  });
});

describe('the background job invariant', () => {
  const run = (node: string, epoch: number, atS: number): JobRun => ({ node, epoch, atMs: 1_800_000_000_000 + atS * 1000 });

  it('a handover (app1 until 10 s, app2 from 13 s at a newer epoch) is no overlap, nor is one machine active again', () => {
    const runs = [1, 2, 3, 10].map((t) => run('app1', 3, t));
    runs.push(...[13, 14, 15].map((t) => run('app2', 4, t)), run('app1', 5, 20), run('app1', 6, 21));
    assert.deepEqual(jobOverlaps(runs), []);
  });

  it('a planted double run (app1 still running at epoch 3 after app2 started at epoch 4) is flagged, on the database clock', () => {
    const runs = [...[1, 2, 3, 4, 5].map((t) => run('app1', 3, t)), ...[4.5, 5.5].map((t) => run('app2', 4, t))];
    const o = jobOverlaps(runs);
    assert.deepEqual(
      o.map((x) => [x.machines, x.epochs]),
      [
        [
          ['app1', 'app2'],
          [3, 4],
        ],
      ],
    );
    assert.match(formatJobOverlap(o[0]!), /^VIOLATION: the background job ran on two machines at once: app1 \(epoch 3, runs .*\) and app2 \(epoch 4/);
  });

  it("a single stale run inside the other machine's span is flagged too", () => {
    const runs = [...[10, 11, 12].map((t) => run('app2', 4, t)), run('app1', 3, 11.5)];
    assert.equal(jobOverlaps(runs).length, 1);
  });
});
