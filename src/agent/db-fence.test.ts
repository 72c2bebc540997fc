import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startTestPostgres } from '../testing/postgres.ts';
import type { PatroniView } from '../etcd/store.ts';
import { sleep, waitFor } from '../util/exec.ts';
import { DbFence, fenceVerdict, type DbFenceDeps, type FenceObservation, type PostgresState } from './db-fence.ts';
import { killPostgres, postgresState } from './db-processes.ts';

const primary: PostgresState = { running: true, primary: true };
const base: FenceObservation = { node: 'db1', postgres: primary, patroni: { leader: 'db2', paused: false, sentAtMs: 0 }, patroniSilentMs: 0, ttlMs: 7000 };
const view = (leader: string | null, paused = false): PatroniView => ({ leader, paused, sentAtMs: 0 });

test('fenceVerdict: a primary here while another member holds the leader key is fenced', () => {
  const v = fenceVerdict(base);
  assert.equal(v.fence, true);
  assert.match(v.fence ? v.reason : '', /PostgreSQL runs as primary here while db2 holds the leader key/);
});

test('fenceVerdict: a primary here with no leader key is fenced only once Patroni here has been silent for a lease', () => {
  assert.equal(fenceVerdict({ ...base, patroni: view(null), patroniSilentMs: 6999 }).fence, false);
  const v = fenceVerdict({ ...base, patroni: view(null), patroniSilentMs: 7000 });
  assert.equal(v.fence, true);
  assert.match(v.fence ? v.reason : '', /no member holds the leader key, and Patroni here has not passed its liveness check for 7\.0 s/);
});

test('fenceVerdict: never without an answer from etcd, in maintenance, as the key holder, or without a running primary', () => {
  const cases: [string, FenceObservation][] = [
    ['etcd did not answer', { ...base, patroni: null, patroniSilentMs: 60_000 }],
    ["Patroni's maintenance mode", { ...base, patroni: view('db2', true) }],
    ['holds the leader key', { ...base, patroni: view('db1'), patroniSilentMs: 60_000 }],
    ['is a replica', { ...base, postgres: { running: true, primary: false } }],
    ['not running', { ...base, postgres: { running: false, primary: false } }],
  ];
  for (const [why, o] of cases) {
    const v = fenceVerdict(o);
    assert.equal(v.fence, false, why);
    assert.ok(!v.fence && v.why.length > 0);
  }
});

function fakeDeps(over: Partial<DbFenceDeps> = {}) {
  const clock = { t: 10_000 };
  const seen = { kills: 0, fenced: [] as string[], logs: [] as string[] };
  const deps: DbFenceDeps = {
    node: 'db1',
    readPatroni: async () => ({ leader: 'db2', paused: false, sentAtMs: clock.t }),
    patroniLive: async () => true,
    postgres: async () => primary,
    kill: async () => {
      seen.kills++;
      return ['patroni (1)'];
    },
    fenced: (reason) => void seen.fenced.push(reason),
    now: () => clock.t,
    wallNow: () => 1_800_000_000_000 + clock.t,
    log: (event) => void seen.logs.push(event),
    ...over,
  };
  return { deps, clock, seen };
}

test('DbFence kills and reports a stale primary, and leaves a healthy one alone', async () => {
  const stale = fakeDeps();
  await new DbFence(stale.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(stale.seen.kills, 1);
  assert.deepEqual(stale.seen.fenced, ['PostgreSQL runs as primary here while db2 holds the leader key']);

  const healthy = fakeDeps({ readPatroni: async () => ({ leader: 'db1', paused: false, sentAtMs: 0 }) });
  await new DbFence(healthy.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(healthy.seen.kills, 0);

  const noEtcd = fakeDeps({ readPatroni: () => Promise.reject(new Error('etcd: deadline exceeded')) });
  await new DbFence(noEtcd.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(noEtcd.seen.kills, 0, 'no fence without an answer from etcd');
});

test('DbFence does not act on an observation older than maxAgeMs (the agent was paused between looking and acting)', async () => {
  const f = fakeDeps();
  // The read was sent, then the agent stood still for 30 s before it looked at PostgreSQL.
  f.deps.postgres = async () => {
    f.clock.t += 30_000;
    return primary;
  };
  await new DbFence(f.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(f.seen.kills, 0);
  assert.deepEqual(f.seen.logs, ['db-fence-deferred']);
});

test("DbFence counts Patroni's silence from its last passed liveness check", async () => {
  let live = true;
  const f = fakeDeps({ readPatroni: async () => ({ leader: null, paused: false, sentAtMs: 0 }), patroniLive: async () => live });
  f.deps.readPatroni = async () => ({ leader: null, paused: false, sentAtMs: f.clock.t });
  const fence = new DbFence(f.deps, { ttlMs: 7000, maxAgeMs: 1500 });
  await fence.tick();
  live = false;
  f.clock.t += 6000;
  await fence.tick();
  assert.equal(f.seen.kills, 0, 'silent for 6 s of a 7 s lease');
  f.clock.t += 1000;
  await fence.tick();
  assert.equal(f.seen.kills, 1, 'silent for a whole lease with no leader key');
});

test('DbFence: a tick while one is under way is dropped, not queued', async () => {
  let release!: () => void;
  let reads = 0;
  const f = fakeDeps({
    readPatroni: () => {
      reads++;
      return new Promise<PatroniView>((r) => (release = () => r({ leader: 'db1', paused: false, sentAtMs: 0 })));
    },
  });
  const fence = new DbFence(f.deps, { ttlMs: 7000, maxAgeMs: 1500 });
  const first = fence.tick();
  const second = fence.tick();
  await sleep(10);
  release();
  await Promise.all([first, second]);
  assert.equal(reads, 1);
});

test('postgresState and killPostgres against a real PostgreSQL: primary, replica by standby.signal, a paused server ended', async (t) => {
  const pg = await startTestPostgres();
  t.after(() => pg.destroy());
  const data = join(pg.dir, 'data');
  assert.deepEqual(await postgresState(data), { running: true, primary: true });
  await writeFile(join(data, 'standby.signal'), '');
  assert.deepEqual(await postgresState(data), { running: true, primary: false }, 'standby.signal makes it a replica');
  pg.pause();
  const ended = await killPostgres(data);
  assert.equal(ended.length, 1);
  assert.match(ended[0]!, /^postgres \(\d+ processes, postmaster \d+\)$/);
  await waitFor('the paused postmaster to be gone', async () => ((await postgresState(data)).running ? undefined : true), 10_000, 50);
  assert.deepEqual(await killPostgres(data), [], 'nothing left to end');
});

test('DbFence renews the Patroni gate only after a fresh answer from etcd found no stale primary, at most once a second', async () => {
  let renewals = 0;
  const decided: number[] = [];
  const gate = {
    renew: async (at: number) => {
      renewals++;
      decided.push(at);
    },
  };
  const ok = fakeDeps({ gate });
  ok.deps.readPatroni = async () => ({ leader: 'db1', paused: false, sentAtMs: ok.clock.t });
  const fence = new DbFence(ok.deps, { ttlMs: 7000, maxAgeMs: 1500, renewEveryMs: 1000 });
  await fence.tick();
  assert.equal(renewals, 1, 'a fresh look, this machine holds the key');
  assert.deepEqual(decided, [1_800_000_000_000 + 10_000], 'counted from the look, on the wall clock');
  ok.clock.t += 250;
  await fence.tick();
  assert.equal(renewals, 1, 'not again within a second');
  ok.clock.t += 1000;
  await fence.tick();
  assert.equal(renewals, 2);

  const noEtcd = fakeDeps({ gate, readPatroni: () => Promise.reject(new Error('unavailable')) });
  renewals = 0;
  await new DbFence(noEtcd.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(renewals, 0, 'a failed read vouches for nothing: the gate runs out');

  // The answer came from before a pause of the agent: not renewed, even though it looked healthy.
  const paused = fakeDeps({ gate });
  paused.deps.readPatroni = async () => ({ leader: 'db1', paused: false, sentAtMs: paused.clock.t });
  paused.deps.postgres = async () => {
    paused.clock.t += 30_000;
    return primary;
  };
  await new DbFence(paused.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(renewals, 0, 'a stale answer vouches for nothing');

  const stale = fakeDeps({ gate });
  await new DbFence(stale.deps, { ttlMs: 7000, maxAgeMs: 1500 }).tick();
  assert.equal(stale.seen.kills, 1);
  assert.equal(renewals, 0, 'the look that fenced does not open the gate; the next one, with PostgreSQL gone, does');
});

test('DbFence on a replica asks neither etcd nor Patroni, keeps the gate open, and does not count Patroni silent while it was one', async () => {
  let reads = 0;
  let probes = 0;
  let renewals = 0;
  let state: PostgresState = { running: true, primary: false };
  const f = fakeDeps({
    readPatroni: async () => {
      reads++;
      return { leader: null, paused: false, sentAtMs: f.clock.t };
    },
    patroniLive: async () => {
      probes++;
      return false;
    },
    postgres: async () => state,
    gate: { renew: async () => void renewals++ },
  });
  const fence = new DbFence(f.deps, { ttlMs: 7000, maxAgeMs: 1500, renewEveryMs: 1000 });
  for (let i = 0; i < 20; i++) {
    await fence.tick();
    f.clock.t += 500;
  }
  assert.equal(reads + probes, 0, 'a replica costs two file reads a look');
  assert.equal(renewals, 10, 'renewed every second');
  // Promoted just now, with no leader key yet and a Patroni that fails its liveness check: 10 s
  // as a replica do not count as silence.
  state = primary;
  await fence.tick();
  assert.equal(f.seen.kills, 0);
  assert.equal(reads, 1);
});
