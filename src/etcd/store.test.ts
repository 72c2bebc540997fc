import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ActiveRecord, State } from '../model/ha.ts';
import { run, sleep, waitFor } from '../util/exec.ts';
import { MAX_DOCTOR_RUN_BYTES, openStore, StoreError, type Leadership, type VigilStore } from './store.ts';
import { closeAll, startTestEtcd, type TestEtcd } from '../testing/etcd.ts';

const rec = (node: string, epoch: number): ActiveRecord => ({ node, epoch, since: new Date().toISOString(), reason: 'test' });

describe('VigilStore against a real etcd', () => {
  let etcd: TestEtcd;
  const stores: VigilStore[] = [];
  let n = 0;
  /** A store on a cluster prefix of its own, so tests do not see each other's keys. */
  const open = async (cluster = `t${++n}`) => {
    const s = await openStore({ endpoints: [etcd.endpoint], cluster, callTimeoutMs: 3000 });
    stores.push(s);
    return s;
  };

  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    try {
      await closeAll(stores);
    } finally {
      await etcd?.stop();
    }
  });

  it("readPatroni reads Patroni's leader key and maintenance mode where patroni.yml's namespace puts them", async () => {
    const s = await open();
    const etcdctl = (...args: string[]) => run('etcdctl', ['--endpoints', etcd.endpoint, ...args], { env: { ETCDCTL_API: '3', PATH: process.env['PATH'] } });
    const key = (k: string) => `/vigil/${s.cluster}/patroni/${s.cluster}/${k}`;
    assert.deepEqual({ ...(await s.readPatroni(s.cluster, 2000)), sentAtMs: 0 }, { leader: null, paused: false, sentAtMs: 0 });
    await etcdctl('put', key('leader'), 'db1');
    await etcdctl('put', key('config'), '{"ttl":7,"pause":true}');
    const before = performance.now();
    const v = await s.readPatroni(s.cluster, 2000);
    assert.equal(v.leader, 'db1');
    assert.equal(v.paused, true);
    assert.ok(v.sentAtMs >= before && v.sentAtMs <= performance.now());
    await etcdctl('put', key('config'), 'not json');
    assert.equal((await s.readPatroni(s.cluster, 2000)).paused, false, 'a config that is not JSON is no pause');
    assert.equal((await s.readPatroni('other', 2000)).leader, null, 'another scope has its own keys');
  });

  it("readPatroniLeader gives the leader key's lease, the sync key and the members' versions; revokeLease drops the leader's keys, never a new leader's", async () => {
    const s = await open();
    const etcdctl = (...args: string[]) => run('etcdctl', ['--endpoints', etcd.endpoint, ...args], { env: { ETCDCTL_API: '3', PATH: process.env['PATH'] } });
    const key = (k: string) => `/vigil/${s.cluster}/patroni/${s.cluster}/${k}`;
    const grant = async () => /lease ([0-9a-f]+) granted/.exec((await etcdctl('lease', 'grant', '60')).stdout)![1]!;
    const empty = await s.readPatroniLeader(s.cluster, 2000);
    assert.deepEqual({ ...empty, sentAtMs: 0 }, { leader: null, lease: null, modRevision: null, paused: false, sync: null, versions: {}, sentAtMs: 0 });

    // As Patroni does it: the leader key and the member key under the member's lease.
    const old = await grant();
    await etcdctl('put', '--lease', old, key('leader'), 'db1');
    await etcdctl('put', '--lease', old, key('members/db1'), '{"role":"primary","version":"4.0.7"}');
    await etcdctl('put', key('members/db2'), '{"role":"replica","version":"4.0.7"}');
    await etcdctl('put', key('sync'), '{"leader":"db1","sync_standby":"db2"}');
    const v = await s.readPatroniLeader(s.cluster, 2000);
    assert.equal(v.leader, 'db1');
    assert.equal(v.lease, BigInt(`0x${old}`).toString(), 'the lease id, in decimal as etcd gives it');
    assert.deepEqual(v.sync, { leader: 'db1', standbys: ['db2'] });
    assert.deepEqual(v.versions, { db1: '4.0.7', db2: '4.0.7' });

    assert.equal(await s.revokeLease(v.lease!, 2000), true);
    const after = await s.readPatroniLeader(s.cluster, 2000);
    assert.equal(after.leader, null, 'the leader key went with its lease');
    assert.deepEqual(Object.keys(after.versions), ['db2'], "and the old leader's member key");
    assert.equal(await s.revokeLease(v.lease!, 2000), false, 'a lease revoked already: nothing to do');

    // A new leader's key has its own lease: revoking the old one again cannot touch it.
    const next = await grant();
    await etcdctl('put', '--lease', next, key('leader'), 'db2');
    assert.equal(await s.revokeLease(v.lease!, 2000), false);
    assert.equal((await s.readPatroniLeader(s.cluster, 2000)).leader, 'db2');
    await assert.rejects(s.revokeLease('0', 2000), /not a lease id/);
  });

  it('serving claims: read with the record, gone when released, and deleted by etcd when the lease is not kept alive', async () => {
    const s = await open();
    const hold = s.servingHold('app1', 1);
    assert.deepEqual((await s.confirmActive(2000)).claims, []);
    await hold.renew(2000);
    await hold.claim(4, 2000);
    assert.equal(hold.claimed, 4);
    assert.deepEqual(
      (await s.confirmActive(2000)).claims.map((c) => [c.node, c.epoch]),
      [['app1', 4]],
    );
    await hold.release(2000);
    assert.equal(hold.claimed, null);
    assert.deepEqual((await s.confirmActive(2000)).claims, [], 'released: the key is gone at once');

    await hold.claim(5, 2000);
    // No keepalive: etcd ends the lease after its TTL (1 s; etcd may round it up), and the claim with it.
    await waitFor('etcd to expire the claim', async () => ((await s.confirmActive(2000)).claims.length === 0 ? true : undefined), 15_000, 100);
    assert.equal(hold.claimed, 5, 'the hold does not know yet');
    await hold.renew(2000);
    assert.equal(hold.claimed, null, 'renew finds the lease gone and takes a new one: the claim must be made again');
    await hold.claim(5, 2000);
    assert.deepEqual(
      (await s.confirmActive(2000)).claims.map((c) => [c.node, c.epoch]),
      [['app1', 5]],
    );
  });

  it('serving claims: extended for a planned restart, the claim lives by a new lease of the given TTL', async () => {
    const s = await open();
    const etcdctl = (...args: string[]) => run('etcdctl', ['--endpoints', etcd.endpoint, ...args], { env: { ETCDCTL_API: '3', PATH: process.env['PATH'] } });
    const leaseOfClaim = async (): Promise<{ lease: string; ttl: number }> => {
      // A lease id is a 64-bit integer: read from the text, not through JSON.parse's doubles.
      const got = /"lease":(\d+)/.exec((await etcdctl('get', `/vigil/${s.cluster}/holders/app3`, '-w', 'json')).stdout);
      assert.ok(got, 'the claim has a lease');
      const hex = BigInt(got[1]!).toString(16);
      const live = JSON.parse((await etcdctl('lease', 'timetolive', hex, '-w', 'json')).stdout) as { 'granted-ttl': number };
      return { lease: hex, ttl: live['granted-ttl'] };
    };
    const hold = s.servingHold('app3', 3);
    await assert.rejects(hold.extend(30, 2000), /no claim to extend/);
    await hold.renew(2000);
    await hold.claim(7, 2000);
    const before = await leaseOfClaim();
    assert.equal(before.ttl, 3);
    await hold.extend(30, 2000);
    const after = await leaseOfClaim();
    assert.notEqual(after.lease, before.lease, 'a new lease');
    assert.equal(after.ttl, 30);
    assert.equal(hold.claimed, 7);
    assert.deepEqual(
      (await s.confirmActive(2000)).claims.map((c) => [c.node, c.epoch]),
      [['app3', 7]],
    );
    await hold.release(2000);
  });

  it('serving claims: a lease kept alive keeps the claim past its TTL', async () => {
    const s = await open();
    const hold = s.servingHold('app2', 2);
    await hold.renew(2000);
    await hold.claim(1, 2000);
    for (let i = 0; i < 12; i++) {
      await sleep(300);
      await hold.renew(2000);
    }
    assert.equal(hold.claimed, 1);
    assert.deepEqual(
      (await s.confirmActive(2000)).claims.map((c) => c.node),
      ['app2'],
    );
  });

  it('compare-and-swap: the first writer wins, a writer with a stale revision loses', async () => {
    const a = await open();
    const b = await open(a.cluster);
    assert.equal(await a.getActive(), null);
    assert.equal(await a.casActive(rec('app1', 1), null), true);
    assert.equal(await b.casActive(rec('app2', 1), null), false, 'creating over an existing record');
    const seen = await b.getActive();
    assert.deepEqual(seen?.record.node, 'app1');
    assert.ok(seen);
    assert.equal(await a.casActive(rec('app2', 2), seen), true);
    assert.equal(await b.casActive(rec('app1', 2), seen), false, 'stale revision');
    const now = await a.getActive();
    assert.equal(now?.record.node, 'app2');
    assert.equal(now?.record.epoch, 2);
    assert.notEqual(now?.revision, seen.revision);
  });

  it('watchActive delivers the current record, then each change in order', async () => {
    const s = await open();
    await s.casActive(rec('app1', 1), null);
    const got: (ActiveRecord | null)[] = [];
    const sub = await s.watchActive((r) => got.push(r));
    try {
      await waitFor('initial record', async () => (got.length >= 1 ? true : undefined), 3000, 20);
      let cur = await s.getActive();
      assert.ok(await s.casActive(rec('app2', 2), cur));
      cur = await s.getActive();
      assert.ok(await s.casActive(rec('app1', 3), cur));
      await waitFor('two changes', async () => (got.length >= 3 ? true : undefined), 3000, 20);
      assert.deepEqual(
        got.map((r) => `${r?.node}@${r?.epoch}`),
        ['app1@1', 'app2@2', 'app1@3'],
      );
    } finally {
      await sub.close();
    }
  });

  it('maintenance: set, get, clear', async () => {
    const s = await open();
    assert.equal(await s.getMaintenance(), null);
    const m = { since: new Date().toISOString(), by: 'admin', reason: 'patching' };
    await s.setMaintenance(m);
    assert.deepEqual(await s.getMaintenance(), m);
    assert.equal(await s.clearMaintenance(), true);
    assert.equal(await s.clearMaintenance(), false);
    assert.equal(await s.getMaintenance(), null);
  });

  it('doctor runs: the last of each source is kept; a report over 1 MiB is refused and nothing changes', async () => {
    const s = await open();
    assert.deepEqual(await s.getDoctorRuns(), []);
    const run = (source: 'cli' | 'dashboard', n: number) => ({ source, by: `u${n}`, at: new Date(n).toISOString(), report: { summary: { failures: n } } });
    await s.putDoctorRun(run('cli', 1));
    await s.putDoctorRun(run('cli', 2));
    await s.putDoctorRun(run('dashboard', 3));
    const byName = (rs: { source: string }[]) => [...rs].sort((a, b) => a.source.localeCompare(b.source));
    assert.deepEqual(byName(await s.getDoctorRuns()), [run('cli', 2), run('dashboard', 3)]);
    await assert.rejects(s.putDoctorRun({ ...run('cli', 4), report: { big: 'x'.repeat(MAX_DOCTOR_RUN_BYTES) } }), /over the 1048576 kept/);
    assert.deepEqual(byName(await s.getDoctorRuns()), [run('cli', 2), run('dashboard', 3)]);
  });

  it('readObserved reads the active record (with its revision), maintenance and the request in one go, absent or present', async () => {
    const s = await open();
    assert.deepEqual(await s.readObserved(), { active: null, maintenance: null, request: null });
    assert.equal(await s.casActive(rec('app1', 1), null), true);
    const m = { since: new Date().toISOString(), by: 'admin', reason: 'patching' };
    await s.setMaintenance(m);
    const r = { kind: 'switchover', id: 'r1', at: new Date().toISOString() } as const;
    await s.putRequest(r);
    const seen = await s.readObserved();
    assert.deepEqual(seen, { active: await s.getActive(), maintenance: m, request: r });
    assert.equal(await s.casActive(rec('app2', 2), { revision: seen.active!.revision }), true, 'its revision is the one a compare-and-swap needs');
  });

  it('operator request: refused while one is pending; cleared only by its id', async () => {
    const s = await open();
    const r1 = { kind: 'switchover', id: 'r1', at: new Date().toISOString() } as const;
    const r2 = { kind: 'failover', to: 'app2', id: 'r2', at: new Date().toISOString() } as const;
    assert.equal(await s.putRequest(r1), true);
    assert.equal(await s.putRequest(r2), false);
    assert.deepEqual(await s.getRequest(), r1);
    assert.equal(await s.clearRequest('r2'), false);
    assert.deepEqual(await s.getRequest(), r1);
    assert.equal(await s.clearRequest('r1'), true);
    assert.equal(await s.getRequest(), null);
    assert.equal(await s.putRequest(r2), true);
    assert.equal(await s.clearRequest(), true);
  });

  it('operator request: answered only by its id; the answer replaces it in one write and stays until the next', async () => {
    const s = await open();
    const r1 = { kind: 'failover', to: 'app2', id: 'r1', at: new Date().toISOString() } as const;
    const answer = (id: string, ok: boolean) => ({ id, ok, message: `answer to ${id}`, at: new Date().toISOString() });
    assert.equal(await s.getRequestAnswer(), null);
    assert.equal(await s.answerRequest(answer('r1', true)), false, 'no request pending');
    assert.equal(await s.getRequestAnswer(), null, 'nothing written');
    assert.equal(await s.putRequest(r1), true);
    assert.equal(await s.answerRequest(answer('r0', true)), false, 'another request');
    assert.deepEqual(await s.getRequest(), r1);
    const a1 = answer('r1', false);
    assert.equal(await s.answerRequest(a1), true);
    assert.equal(await s.getRequest(), null);
    assert.deepEqual(await s.getRequestAnswer(), a1);
    assert.equal(await s.putRequest({ ...r1, id: 'r2' }), true, 'an answer does not block the next request');
    assert.deepEqual(await s.getRequestAnswer(), a1);
  });

  it('the active record names the request that wrote it; a record without one still reads', async () => {
    const s = await open();
    assert.equal(await s.casActive({ ...rec('app1', 1), requestId: 'r1' }, null), true);
    const cur = await s.getActive();
    assert.equal(cur?.record.requestId, 'r1');
    assert.equal(await s.casActive(rec('app2', 2), cur), true);
    assert.deepEqual(Object.keys((await s.getActive())?.record ?? {}).sort(), ['epoch', 'node', 'reason', 'since']);
  });

  it('a value Vigil did not write is an ETCD_DATA error naming the key', async () => {
    const s = await open();
    await run('etcdctl', ['--endpoints', etcd.endpoint, 'put', `/vigil/${s.cluster}/active`, '{"node":""}'], {
      env: { ETCDCTL_API: '3', PATH: process.env['PATH'] },
    });
    await assert.rejects(s.getActive(), (err: StoreError) => {
      assert.equal(err.code, 'ETCD_DATA');
      assert.equal(err.retryable, false);
      assert.match(err.message, new RegExp(`/vigil/${s.cluster}/active`));
      return true;
    });
  });

  it('refuses to write an invalid record', async () => {
    const s = await open();
    await assert.rejects(s.casActive({ node: 'app1', epoch: -1, since: 'x', reason: 'r' }, null), (err: StoreError) => err.code === 'ETCD_DATA');
    assert.equal(await s.getActive(), null);
  });

  it('openStore fails with a retryable StoreError when nothing answers', async () => {
    const started = performance.now();
    await assert.rejects(openStore({ endpoints: ['http://127.0.0.1:1'], cluster: 'x', dialTimeoutMs: 800 }), (err: StoreError) => {
      assert.ok(err instanceof StoreError);
      assert.ok(err.retryable);
      assert.match(err.code, /^ETCD_(TIMEOUT|UNAVAILABLE)$/);
      return true;
    });
    assert.ok(performance.now() - started < 10_000); // the 800 ms dial deadline, not the 5 s call default retried
  });

  it('one member that refuses connections fails no call: a call gRPC never sent is tried again, `once` calls and claim renewals included', async () => {
    // etcd3 picks a member at random for each call; port 1 refuses, as a member restarting does.
    // Without the retry of calls never sent, about half of these would fail.
    const s = await openStore({ endpoints: [etcd.endpoint, 'http://127.0.0.1:1'], cluster: `t${++n}`, callTimeoutMs: 3000 });
    stores.push(s);
    assert.equal(await s.casActive(rec('app1', 1), null), true);
    const hold = s.servingHold('app1', 5);
    const failures: string[] = [];
    for (let i = 0; i < 30; i++) {
      await s.confirmActive(3000).catch((err: Error) => failures.push(`confirmActive: ${err.message}`));
      await hold.renew(3000).catch((err: Error) => failures.push(`renew: ${err.message}`));
    }
    assert.deepEqual(failures, []);
  });

  describe('leadership', () => {
    it('of two campaigners one leads; the other takes over when it resigns', async () => {
      const a = await open();
      const b = await open(a.cluster);
      const la = await a.campaign('obs-a', 'host-a', 2);
      const lb = await b.campaign('obs-b', 'host-b', 2);
      assert.equal(la.isLeader(), true);
      assert.equal(lb.isLeader(), false);
      assert.equal((await lb.current())?.id, 'obs-a');
      let elected = 0;
      lb.onElected(() => elected++);
      await la.resign();
      assert.equal(la.isLeader(), false);
      // b hears the key's deletion on its watch; no need to wait for a TTL.
      await waitFor('b to lead', async () => (lb.isLeader() ? true : undefined), 1500, 20);
      assert.equal(elected, 1);
      assert.equal((await a.currentLeader())?.id, 'obs-b');
      await lb.resign();
      assert.equal(await a.currentLeader(), null);
    });

    it('a crashed leader is replaced once its lease expires', async () => {
      const s = await open();
      const { child, leading } = spawnCampaigner(etcd.endpoint, s.cluster, 'obs-dead', 2);
      try {
        await leading; // loading TypeScript in a fresh process can take seconds on a busy machine
        assert.equal((await s.currentLeader())?.id, 'obs-dead');
        const l = await s.campaign('obs-live', 'h', 2);
        assert.equal(l.isLeader(), false);
        process.kill(child.pid as number, 'SIGKILL');
        const killedAt = performance.now();
        await waitFor('takeover', async () => (l.isLeader() ? true : undefined), 5000, 20);
        const tookMs = performance.now() - killedAt;
        assert.ok(tookMs < 10_000, `took ${tookMs} ms`); // TTL 2 s, plus etcd's expiry check and the watch; loose for a loaded machine
        assert.equal((await s.currentLeader())?.id, 'obs-live');
      } finally {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGKILL');
      }
    });

    it('casActive with a leader fails once that leadership is gone', async () => {
      const a = await open();
      const b = await open(a.cluster);
      const la = await a.campaign('obs-a', 'h', 2);
      assert.equal(await a.casActive(rec('app1', 1), null, { leader: la }), true);
      const cur = await a.getActive();
      const lb = await b.campaign('obs-b', 'h', 2);
      assert.equal(await b.casActive(rec('app2', 2), cur, { leader: lb }), false, 'b does not lead');
      await la.resign();
      assert.equal(await a.casActive(rec('app2', 2), cur, { leader: la }), false, 'a resigned');
      await waitFor('b to lead', async () => (lb.isLeader() ? true : undefined), 1500, 20);
      assert.equal(await b.casActive(rec('app2', 2), cur, { leader: lb }), true);
    });

    it('the observer state is written only by the leader and goes with its lease', async () => {
      const a = await open();
      const b = await open(a.cluster);
      const la = await a.campaign('obs-a', 'h', 2);
      const lb = await b.campaign('obs-b', 'h', 2);
      const st = (by: string, state: State) => ({ state, reason: 'test', since: new Date().toISOString(), epoch: 1, by });
      assert.equal(await a.getObserverState(), null);
      assert.equal(await b.putObserverState(st('obs-b', 'suspect'), { leader: lb }), false, 'b does not lead');
      assert.equal(await a.putObserverState(st('obs-a', 'healthy'), { leader: la }), true);
      assert.deepEqual(await b.getObserverState().then((s) => s && [s.by, s.state]), ['obs-a', 'healthy']);
      const tokenA = la.token();
      assert.ok(tokenA, 'a leader has a token');
      await la.resign();
      assert.equal(la.token(), null);
      assert.equal(await b.getObserverState(), null, 'revoking the lead removes the state');
      await waitFor('b to lead', async () => (lb.isLeader() ? true : undefined), 1500, 20);
      assert.notEqual(lb.token(), tokenA, 'each spell of leadership has its own token');
      assert.equal(await b.putObserverState(st('obs-b', 'failing-over'), { leader: lb }), true);
      assert.equal((await a.getObserverState())?.state, 'failing-over');
      await lb.resign();
    });
  });

  describe('when etcd hangs (SIGSTOP)', () => {
    it('confirmActive times out, a signal cancels, a watch carries on after etcd resumes', async () => {
      const s = await open();
      await s.casActive(rec('app1', 1), null);
      assert.equal((await s.confirmActive(1000)).record?.node, 'app1');
      const seen: string[] = [];
      const sub = await s.watchActive((r) => seen.push(`${r?.node}@${r?.epoch}`));
      try {
        await etcd.pause();
        const started = performance.now();
        await assert.rejects(s.confirmActive(300), (err: StoreError) => {
          assert.equal(err.code, 'ETCD_TIMEOUT');
          assert.equal(err.retryable, true);
          return true;
        });
        const took = performance.now() - started;
        assert.ok(took >= 290 && took < 5000, `took ${took} ms`); // the 300 ms deadline; loose above for a loaded machine
        const cancel = new AbortController();
        setTimeout(() => cancel.abort(), 100);
        await assert.rejects(s.getActive({ timeoutMs: 10_000, signal: cancel.signal }), (err: StoreError) => err.code === 'ETCD_CANCELLED' && !err.retryable);
      } finally {
        etcd.resume();
      }
      await waitFor('confirm after resume', async () => (await s.confirmActive(1000)).record?.node, 5000, 50);
      assert.ok(await s.casActive(rec('app2', 2), await s.getActive()));
      await waitFor('the watch to see it', async () => (seen.length >= 2 ? true : undefined), 5000, 20);
      assert.deepEqual(seen, ['app1@1', 'app2@2']);
      await sub.close();
    });

    it('the leader hears onLost before its lease can expire, and leads again after', async () => {
      const s = await open();
      const l: Leadership = await s.campaign('obs-a', 'h', 2);
      assert.ok(l.isLeader());
      const lost: string[] = [];
      l.onLost((why) => lost.push(why));
      await sleep(800); // a keepalive or two went through
      try {
        await etcd.pause();
        const pausedAt = performance.now();
        // It must not believe it leads once etcd may have expired the lease (2 s after the last
        // keepalive, which was before the pause): isLeader() counts on the monotonic clock, so it
        // holds however late this test's own timer fires on a loaded machine.
        await sleep(2000 - (performance.now() - pausedAt));
        assert.equal(l.isLeader(), false, 'no longer leading 2 s into the pause');
        await waitFor('onLost', async () => (lost.length > 0 ? true : undefined), 10_000, 20);
        assert.match(lost[0] ?? '', /keepalive/);
      } finally {
        etcd.resume();
      }
      await waitFor('leading again', async () => (l.isLeader() ? true : undefined), 8000, 50);
      assert.equal(lost.length, 1);
    });
  });
});

/** A campaigner in its own process, to be killed like a crashed observer; `leading` resolves once it leads. */
function spawnCampaigner(endpoint: string, cluster: string, id: string, ttlSeconds: number) {
  const storeUrl = new URL('./store.ts', import.meta.url).href;
  const code = `
    const { openStore } = await import(${JSON.stringify(storeUrl)});
    const s = await openStore({ endpoints: [${JSON.stringify(endpoint)}], cluster: ${JSON.stringify(cluster)} });
    const l = await s.campaign(${JSON.stringify(id)}, 'child', ${ttlSeconds});
    console.log(l.isLeader() ? 'leading' : 'following');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const leading = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('leading')) resolve();
      else if (out.includes('following')) reject(new Error('the child campaigner did not win'));
    });
    child.once('exit', (code, signal) => reject(new Error(`the child campaigner exited (${code ?? signal})`)));
  });
  return { child, leading };
}
