import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PatroniLeaderView } from '../etcd/store.ts';
import {
  failsafeHolder,
  failsafeWanted,
  initialReleaseMemory,
  releaseVerdict,
  remember,
  serversToReady,
  stoppingLeader,
  type MemberView,
  type ProxyView,
  type ReleaseInput,
  type ReleaseMemory,
} from './db-release.ts';

// db1 leads under lease 77, db2 is its synchronous standby; both run Patroni 4.0.7.
const keys = (over: Partial<PatroniLeaderView> = {}): PatroniLeaderView => ({
  leader: 'db1',
  lease: '77',
  modRevision: '10',
  paused: false,
  sync: { leader: 'db1', standbys: ['db2'] },
  versions: {},
  sentAtMs: 0,
  ...over,
});
const primary: MemberView = { name: 'db1', reached: true, role: 'primary', state: 'running', version: '4.0.7' };
const replica: MemberView = { name: 'db2', reached: true, role: 'replica', state: 'streaming', version: '4.0.7' };
const dead: MemberView = { name: 'db1', reached: false };
const proxyDown: ProxyView[] = [{ name: 'lb', read: true, routed: [] }];

/** Feeds rounds through remember() as the loop does, and returns the last verdict. */
function run(
  rounds: readonly { atMs: number; members: readonly MemberView[]; patroni?: PatroniLeaderView | null; proxies?: readonly ProxyView[] }[],
  o: { synchronous?: boolean; failAfterMs?: number; memory?: ReleaseMemory } = {},
) {
  let memory = o.memory ?? initialReleaseMemory();
  let verdict;
  for (const r of rounds) {
    const input: ReleaseInput = {
      nowMs: r.atMs,
      patroni: r.patroni === undefined ? keys() : r.patroni,
      members: [...r.members],
      synchronous: o.synchronous ?? true,
      ...(r.proxies ? { proxies: [...r.proxies] } : {}),
    };
    memory = remember(memory, input);
    verdict = releaseVerdict(memory, input, o.failAfterMs ?? 2000);
  }
  return { verdict: verdict!, memory };
}

describe('the database leader release (pure decision)', () => {
  it('does nothing while the leader serves as a running primary', () => {
    assert.deepEqual(run([{ atMs: 0, members: [primary, replica] }]).verdict, { kind: 'healthy' });
  });

  it('releases a leader that stopped answering, once failAfterMs has passed since it last served, every proxy has it down and the sync standby is healthy', () => {
    const seen = [
      { atMs: 0, members: [primary, replica] },
      { atMs: 1000, members: [dead, replica] }, // silent: first seen failing a check timeout later
      { atMs: 1900, members: [dead, replica] },
    ];
    assert.equal(run(seen).verdict.kind, 'wait', 'not before 2 s since it last served');
    const later = [...seen, { atMs: 2100, members: [dead, replica] }];
    assert.deepEqual(run(later).verdict, { kind: 'needs-proxies', leader: 'db1' }, 'the proxies are read only when everything else says release');
    const v = run([...later.slice(0, -1), { atMs: 2100, members: [dead, replica], proxies: proxyDown }]).verdict;
    assert.equal(v.kind, 'release');
    assert.equal(v.kind === 'release' && `${v.leader}/${v.lease}/${v.standby}`, 'db1/77/db2');
  });

  it('counts a leader first seen failing (the observer just started) from that first look; its version from its member key', () => {
    const patroni = keys({ versions: { db1: '4.0.7' } });
    const rounds = [
      { atMs: 5000, members: [dead, replica], patroni },
      { atMs: 6500, members: [dead, replica], proxies: proxyDown, patroni },
    ];
    assert.equal(run(rounds).verdict.kind, 'wait');
    assert.equal(run([...rounds, { atMs: 7100, members: [dead, replica], proxies: proxyDown, patroni }]).verdict.kind, 'release');
  });

  it('releases a leader whose Patroni says it is no longer primary (demoted: cut off from etcd) after SAID_NOT_PRIMARY_MS, not failAfterMs', () => {
    const demoted: MemberView = { ...primary, role: 'demoted', state: 'stopped' };
    const base = { atMs: 0, members: [primary, replica] };
    assert.equal(run([base, { atMs: 300, members: [demoted, replica], proxies: proxyDown }]).verdict.kind, 'wait');
    const v = run([base, { atMs: 300, members: [demoted, replica] }, { atMs: 600, members: [demoted, replica], proxies: proxyDown }]).verdict;
    assert.equal(v.kind, 'release');
    assert.match(v.kind === 'release' ? v.reason : '', /answers as demoted \(stopped\)/);
  });

  it('leaves a leader whose Patroni still calls it primary to Patroni, whatever PostgreSQL does (a planned restart, a crash Patroni fails over itself)', () => {
    for (const state of ['crashed', 'starting', 'restarting', 'stopping']) {
      const v = run([
        { atMs: 0, members: [primary, replica] },
        { atMs: 9000, members: [{ ...primary, state }, replica], proxies: proxyDown },
      ]).verdict;
      assert.deepEqual(v, { kind: 'healthy' }, state);
    }
  });

  it('releases a leader whose Patroni is stopping PostgreSQL once its postmaster has exited (its port refuses connections), at once', () => {
    const stopping: MemberView = { ...primary, state: 'stopping' };
    const stopped: MemberView = { ...stopping, postgresRefused: true };
    const base = { atMs: 0, members: [primary, replica] };
    assert.deepEqual(run([base, { atMs: 250, members: [stopping, replica], proxies: proxyDown }]).verdict, { kind: 'healthy' }, 'still shutting down');
    assert.deepEqual(
      run([base, { atMs: 250, members: [stopped, replica] }]).verdict,
      { kind: 'needs-proxies', leader: 'db1' },
      'no wait of SAID_NOT_PRIMARY_MS',
    );
    const v = run([base, { atMs: 250, members: [stopped, replica], proxies: proxyDown }]).verdict;
    assert.equal(v.kind, 'release');
    assert.match(v.kind === 'release' ? v.reason : '', /answers as primary \(stopping\) and its PostgreSQL port refuses connections/);
    // The other conditions still hold it: a proxy routing to it, no healthy synchronous standby, Patroni paused.
    const routed = run([base, { atMs: 250, members: [stopped, replica], proxies: [{ name: 'lb', read: true, routed: ['db1'] }] }]).verdict;
    assert.equal(routed.kind, 'wait');
    assert.equal(run([base, { atMs: 250, members: [stopped, { ...replica, state: 'stopped' }], proxies: proxyDown }]).verdict.kind, 'wait');
    assert.equal(run([base, { atMs: 250, members: [stopped, replica], proxies: proxyDown, patroni: keys({ paused: true }) }]).verdict.kind, 'wait');
  });

  it('a refused PostgreSQL port counts only while Patroni says stopping: a running, starting or restarting primary is left to Patroni', () => {
    for (const state of ['running', 'starting', 'restarting', 'crashed']) {
      const v = run([
        { atMs: 0, members: [primary, replica] },
        { atMs: 9000, members: [{ ...primary, state, postgresRefused: true }, replica], proxies: proxyDown },
      ]).verdict;
      assert.deepEqual(v, { kind: 'healthy' }, state);
    }
  });

  it("does not wait for the observer's own proxy, which it fences with MAINT right before the release", () => {
    const routing: ProxyView[] = [{ name: 'observer', read: true, routed: ['db1'] }];
    const rounds = [
      { atMs: 0, members: [primary, replica] },
      { atMs: 2500, members: [dead, replica], proxies: routing },
    ];
    assert.equal(run(rounds).verdict.kind, 'wait', 'a proxy of another machine that still routes holds it up');
    let memory = initialReleaseMemory();
    let verdict;
    for (const r of rounds) {
      const input: ReleaseInput = {
        nowMs: r.atMs,
        patroni: keys(),
        members: r.members,
        synchronous: true,
        ownProxy: 'observer',
        ...(r.proxies ? { proxies: r.proxies } : {}),
      };
      memory = remember(memory, input);
      verdict = releaseVerdict(memory, input, 2000);
    }
    assert.equal(verdict!.kind, 'release');
  });

  it('waits while any proxy still routes to the leader, or cannot be read', () => {
    const base = [{ atMs: 0, members: [primary, replica] }];
    const routed = run([...base, { atMs: 3000, members: [dead, replica], proxies: [{ name: 'lb', read: true, routed: ['db1'] }] }]).verdict;
    assert.match(routed.kind === 'wait' ? routed.reason : '', /proxy lb still routes :5000 to db1/);
    const unread = run([
      ...base,
      { atMs: 3000, members: [dead, replica], proxies: [...proxyDown, { name: 'lb2', read: false, routed: [], error: 'ECONNREFUSED' }] },
    ]).verdict;
    assert.match(unread.kind === 'wait' ? unread.reason : '', /proxy lb2 could not be read \(ECONNREFUSED\)/);
  });

  it('in synchronous mode waits unless a standby named in the sync key (written by this leader) answers as a running replica', () => {
    const base = { atMs: 0, members: [primary, replica] };
    const lagging: MemberView = { ...replica, state: 'starting' };
    for (const [what, round] of [
      ['standby not running', { atMs: 3000, members: [dead, lagging], proxies: proxyDown }],
      ['standby unreachable', { atMs: 3000, members: [dead, { name: 'db2', reached: false }], proxies: proxyDown }],
      ['sync key names another', { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: keys({ sync: { leader: 'db1', standbys: ['db3'] } }) }],
      [
        'sync key from an older leader',
        { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: keys({ sync: { leader: 'db2', standbys: ['db1'] } }) },
      ],
      ['no sync key', { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: keys({ sync: null }) }],
    ] as const) {
      assert.equal(run([base, round]).verdict.kind, 'wait', what);
    }
    // Asynchronous mode: any running replica (Patroni still applies maximum_lag_on_failover).
    assert.equal(
      run([base, { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: keys({ sync: null }) }], { synchronous: false }).verdict.kind,
      'release',
    );
  });

  it('never releases on Patroni 3.0.0 to 3.0.2, nor while a member version is unknown', () => {
    const old = (m: MemberView): MemberView => ({ ...m, version: '3.0.2' });
    const v = run([
      { atMs: 0, members: [old(primary), old(replica)] },
      { atMs: 3000, members: [dead, old(replica)], proxies: proxyDown },
    ]).verdict;
    assert.match(v.kind === 'wait' ? v.reason : '', /Patroni 3\.0\.2, which could write its leader key back/);
    const unknown = run([
      { atMs: 0, members: [dead, replica] },
      { atMs: 3000, members: [dead, replica], proxies: proxyDown },
    ]).verdict;
    assert.match(unknown.kind === 'wait' ? unknown.reason : '', /version on db1 is not known yet/);
    const fixed = (m: MemberView): MemberView => ({ ...m, version: '3.0.3' });
    assert.equal(
      run([
        { atMs: 0, members: [fixed(primary), fixed(replica)] },
        { atMs: 3000, members: [dead, fixed(replica)], proxies: proxyDown },
      ]).verdict.kind,
      'release',
    );
  });

  it('leaves Patroni alone when it is paused, when etcd cannot be read, and when there is no leader key', () => {
    const base = { atMs: 0, members: [primary, replica] };
    assert.equal(run([base, { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: keys({ paused: true }) }]).verdict.kind, 'wait');
    assert.equal(run([base, { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: null }]).verdict.kind, 'wait');
    assert.deepEqual(run([base, { atMs: 3000, members: [dead, replica], proxies: proxyDown, patroni: keys({ leader: null, lease: null }) }]).verdict, {
      kind: 'healthy',
    });
  });

  it('releases a lease once: after it, it waits for Patroni', () => {
    const { memory } = run([{ atMs: 0, members: [primary, replica] }]);
    const v = run([{ atMs: 3000, members: [dead, replica], proxies: proxyDown }], { memory: { ...memory, released: ['77'] } }).verdict;
    assert.match(v.kind === 'wait' ? v.reason : '', /was released; waiting for Patroni/);
  });

  it('starts counting again when the leader serves again', () => {
    const v = run([
      { atMs: 0, members: [primary, replica] },
      { atMs: 1500, members: [dead, replica] },
      { atMs: 1800, members: [primary, replica] },
      { atMs: 3000, members: [dead, replica], proxies: proxyDown },
    ]).verdict;
    assert.equal(v.kind, 'wait', 'failing for 1.2 s since it last served, not 3 s');
  });

  it('takes a :5000 server out of MAINT only once its member is a healthy replica, or the running primary holding the key', () => {
    const demotedStill: MemberView = { ...primary, role: 'primary', state: 'stopping' };
    assert.deepEqual(serversToReady(['db1'], [demotedStill, replica], 'db2'), [], 'a Patroni that still believes it leads stays out');
    assert.deepEqual(serversToReady(['db1'], [dead, replica], 'db2'), [], 'nor one that does not answer');
    assert.deepEqual(serversToReady(['db1'], [{ ...replica, name: 'db1' }, replica], 'db2'), ['db1'], 'a rejoined replica comes back');
    assert.deepEqual(serversToReady(['db1'], [primary, replica], 'db2'), [], 'a running primary without the key stays out');
    assert.deepEqual(serversToReady(['db1'], [primary, replica], 'db1'), ['db1'], 'the primary that holds the key serves');
  });

  it('a leader whose Patroni is stopping PostgreSQL (role primary, state stopping) is named for MAINT; not when paused, restarting, running or another member', () => {
    const stopping: MemberView = { ...primary, state: 'stopping' };
    assert.equal(stoppingLeader({ patroni: keys(), members: [stopping, replica] }), 'db1');
    assert.equal(stoppingLeader({ patroni: keys({ paused: true }), members: [stopping, replica] }), undefined, 'paused: Patroni acts on nothing');
    assert.equal(stoppingLeader({ patroni: keys(), members: [{ ...primary, state: 'restarting' }, replica] }), undefined, 'a restart comes back as primary');
    assert.equal(stoppingLeader({ patroni: keys(), members: [primary, replica] }), undefined);
    assert.equal(stoppingLeader({ patroni: keys({ leader: 'db2' }), members: [stopping, replica] }), undefined, 'only the key holder');
    assert.equal(stoppingLeader({ patroni: null, members: [stopping, replica] }), undefined, 'etcd unread');
    // Once stopped it is a replica (or the primary with the key again): serversToReady brings it back.
    assert.deepEqual(serversToReady(['db1'], [stopping, replica], 'db1'), [], 'stays out while stopping');
  });
});

describe("turning Patroni's failsafe mode on again (failsafeHolder)", () => {
  const input = (over: Partial<ReleaseInput> = {}): ReleaseInput => ({ nowMs: 0, patroni: keys(), members: [primary, replica], synchronous: true, ...over });
  const memory = initialReleaseMemory();

  it('starts wanting it checked, and names the holder of a key not released that answers as a running primary', () => {
    assert.equal(memory.failsafeToRestore, true);
    assert.equal(failsafeHolder(memory, input()), 'db1');
  });

  it('never while the released key is still there, nor without a key, a readable etcd, or a serving holder', () => {
    assert.equal(failsafeHolder({ ...memory, released: ['77'] }, input()), null, 'the release is under way: the standby has no key of its own yet');
    assert.equal(failsafeHolder(memory, input({ patroni: keys({ leader: null, lease: null }) })), null, 'no key: the standby may still be racing');
    assert.equal(failsafeHolder(memory, input({ patroni: null })), null);
    assert.equal(failsafeHolder(memory, input({ patroni: keys({ paused: true }) })), null);
    assert.equal(failsafeHolder(memory, input({ members: [dead, replica] })), null);
    assert.equal(failsafeHolder(memory, input({ members: [{ ...primary, state: 'starting' }, replica] })), null);
  });

  it('wants it on where every member runs Patroni 3.0.3 or later, off where one runs 3.0.0 to 3.0.2, nothing until every version is known', () => {
    const v = (versions: Record<string, string>) => ({ ...memory, versions });
    assert.equal(failsafeWanted(v({ db1: '4.0.7', db2: '3.0.3' }), [primary, replica]), true);
    assert.equal(failsafeWanted(v({ db1: '3.0.2', db2: '3.0.2' }), [primary, replica]), false, "the agent's gate and fence: failsafe cannot ride it out there");
    assert.equal(failsafeWanted(v({ db1: '4.0.7', db2: '3.0.1' }), [primary, replica]), false, 'one older member is enough');
    assert.equal(failsafeWanted(v({ db1: '4.0.7' }), [primary, replica]), undefined, "db2's version unknown");
    assert.equal(failsafeWanted(v({}), []), undefined);
  });

  it('after the release: once the standby holds a key of its own and serves', () => {
    const promoted: MemberView = { name: 'db2', reached: true, role: 'primary', state: 'running', version: '4.0.7' };
    const after = input({ patroni: keys({ leader: 'db2', lease: '88', sync: { leader: 'db2', standbys: [] } }), members: [dead, promoted] });
    assert.equal(failsafeHolder({ ...memory, released: ['77'] }, after), 'db2');
  });
});
