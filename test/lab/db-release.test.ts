/**
 * The observer's database leader release (issue 11), on trixie machines: PostgreSQL 17 and
 * Patroni 4, whose leader key lives at least 20 s after its holder dies. The primary's machine is
 * killed, its PostgreSQL killed, or its machine goes silent (link down: not even a refusal), while
 * a client writes through :5000. Each fault holds 12 s, less than the
 * dead leader's lease: writes come back on the other machine while it holds only because the
 * leadership was ended early (by the observer's release, or by Patroni itself when its own
 * PostgreSQL crashed). And in every case: no acknowledged write lost, never two primaries behind
 * :5000, nothing acknowledged by the old primary once the new one has, and the cluster whole
 * again afterwards. The lab has two proxy machines of their own, and the release fences the old
 * primary's :5000 server (MAINT) on both. The figures are bench/db-failover.ts's.
 *
 * Three etcd members (the observer machine and both db machines), so etcd can also lose its quorum.
 *
 * etcd out of service (issue 14 §3): every member paused, every member but one paused, and the
 * primary's packets to etcd's client port dropped, each for 30 s, longer than Patroni's ttl, while
 * every db machine is healthy. Patroni's failsafe mode keeps the primary (it reaches every
 * member's REST API): writes through :5000 go on, nothing moves, and the same primary holds the
 * leader key again afterwards, with no operator. The application tier beside it, with the
 * checker writing through :80: the active agent rides the outage out (its peers confirm it is the
 * only one that may serve), so at least 90% of those writes succeed, and never two app machines serve.
 *
 * One etcd member lost (issue 14 §2): the member etcd's raft leader runs on killed, and kept from
 * restarting, for 30 s. The two left keep the quorum: a write through them is committed all along;
 * an agent may ride out the second or so the others take to elect a leader, but etcd answers it
 * again while the member is still down; writes through :5000 and :80 go on with the same primary,
 * and never two app machines serve.
 *
 * Not here: the primary cut off (by address, both ways) from every etcd member, which in this lab
 * cuts it off from its standby too (`etcd-cut`). Held 12 s, writes failed until about 4 s after
 * the cut healed, with failsafe mode (the old primary served again) and without it (the standby
 * did): no failover while the cut held either way, a case of its own, not looked into yet.
 */
import { etcdctlTlsFlags } from '../../src/render/etcd.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DB_ETCD_MEMBER_FAULTS, DB_ETCD_OUTAGES, DB_RELEASE_FAULTS, runDbFault, type DbFault } from '../../src/lab/db-faults.ts';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { withRole } from '../../src/config/schema.ts';
import { UNITS } from '../../src/layout/units.ts';
import { printJournals, unitJournal } from './journal.ts';
import { LabShell } from '../../src/lab/shell.ts';
import { ETCD_CLIENT_PORT } from '../../src/layout/network.ts';
import { Checker } from '../../src/lab/checker.ts';
import { waitFor } from '../../src/util/exec.ts';

let lab: LabHandle;
const HOLD_MS = 12_000;
const OUTAGE_MS = 30_000;

before(async () => {
  await labDown();
  // Two proxies of their own: the release must fence both (MAINT on each), through their agents.
  lab = await labUp({ topology: 'distributed', release: 'trixie', proxies: 2, etcd: 3 }, (l) => console.log(`# lab: ${l}`));
});
after(async () => labDown());

/** Patroni on the db machines, the app machines' agents and the observer: what they said explains writes that stopped. */
function journalUnits(): [string, string][] {
  return [
    ...withRole(lab.cluster, 'db').map((m): [string, string] => [m.name, UNITS.patroni]),
    ...withRole(lab.cluster, 'app').map((m): [string, string] => [m.name, UNITS.agent]),
    ...withRole(lab.cluster, 'observer').map((m): [string, string] => [m.name, UNITS.observer]),
  ];
}

test("the lab runs the seed's versions: PostgreSQL 17, Patroni 4, ttl 20 (Patroni 3.2+ floor)", () => {
  assert.equal(lab.cluster.database.postgresVersion, 17);
  assert.match(lab.state.packages?.patroni ?? '', /^4\./);
  assert.equal(lab.cluster.timers.ttlSeconds, 20);
  assert.ok(HOLD_MS < lab.cluster.timers.ttlSeconds * 1000, "each fault holds less than the dead leader's lease would live");
});

for (const fault of DB_RELEASE_FAULTS.filter((f) => f !== 'etcd-cut')) {
  test(`${fault} on the primary: the standby takes over before the old leader's lease ends, no acknowledged write lost`, async () => {
    await labSettled(lab);
    const r = await runDbFault(lab, fault, { holdMs: HOLD_MS, say: (l) => console.log(`# ${l}`) });
    console.log(`# ${fault}: ${JSON.stringify({ ...r, missing: r.missing.length, proxyLog: undefined })}`);
    for (const l of r.proxyLog) console.log(`#   haproxy: ${l}`);
    assert.ok(r.samples > 30, `HAProxy's servers were sampled (${r.samples} samples)`);
    assert.ok(r.mostPrimariesUp <= 1, `at most one running primary up behind :5000 at any sample (saw ${r.mostPrimariesUp})`);
    assert.equal(r.oldAcksAfterNew, 0, 'the old primary acknowledged nothing after the new one had');
    if (fault === 'postgres-kill') {
      // Patroni may fail over or start PostgreSQL again where it was: either way, before the fault ends.
      assert.ok(
        r.resumedAfterMs !== null && r.resumedAfterMs < r.heldMs,
        `writes came back while the fault lasted (after ${r.resumedAfterMs} ms of ${r.heldMs})`,
      );
    } else {
      assert.ok(
        r.backAfterMs !== null && r.backAfterMs < r.heldMs,
        `writes came back on the other machine while the fault lasted (after ${r.backAfterMs} ms of ${r.heldMs})`,
      );
    }
    assert.deepEqual(r.missing, [], `every acknowledged write is in the database (${r.missing.length} of ${r.acked} missing)`);
    assert.equal(r.notHealed, null, 'the database tier is whole again: a primary with its synchronous standby');
    // A killed PostgreSQL under a live Patroni: Patroni handles it (primary_start_timeout 0 in synchronous mode); the observer may release or not.
    if (fault !== 'postgres-kill') {
      assert.ok(r.releases >= 1, `the observer released the dead leader's lease (${r.releases} db-leader-released lines)`);
      assert.deepEqual(
        r.oldInMaint,
        r.proxies,
        `the old primary's :5000 server went to MAINT on every proxy before the release (seen on: ${r.oldInMaint.join(', ') || 'none'})`,
      );
    }
  });
}

/**
 * While one etcd member is down: every 2 s, a key written through the cluster's endpoints (etcdctl
 * on the observer machine, 5 s to commit). Each write that commits proves a quorum at that time.
 */
/**
 * Killing the raft leader leaves etcd without one until the others elect one (about a second on a
 * quiet host, more under load): a write sent meanwhile may time out ("possibly due to previous
 * leader failure", seen once in the lab). Writes sent after this long must all commit.
 */
const ELECTION_MS = 10_000;

async function quorumProbe(holdMs: number): Promise<{ ok: number; failed: string[]; failedAfterElection: string[] }> {
  const out = { ok: 0, failed: [] as string[], failedAfterElection: [] as string[] };
  const started = performance.now();
  const until = started + holdMs - 2000;
  const members = withRole(lab.cluster, 'etcd');
  // Every member's endpoint: etcdctl's client moves past the dead one, as Patroni's and Vigil's do.
  const endpoints = members.map((m) => `https://${m.address}:${ETCD_CLIENT_PORT}`).join(',');
  const on = withRole(lab.cluster, 'observer')[0]!.name;
  await sleep(1000);
  for (let i = 0; performance.now() < until; i++) {
    const sentAfter = Math.round(performance.now() - started);
    const r = await new LabShell(on)
      .exec(['etcdctl', ...etcdctlTlsFlags(on), `--endpoints=${endpoints}`, '--command-timeout=5s', 'put', '/vigil-lab/quorum-probe', String(i)], {
        timeoutMs: 20_000,
      })
      .catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }));
    if (r.code === 0) out.ok++;
    else {
      const why = `write ${i} (sent ${sentAfter} ms into the fault): ${r.stderr.trim().split('\n').pop() ?? `exit ${r.code}`}`;
      out.failed.push(why);
      if (sentAfter > ELECTION_MS) out.failedAfterElection.push(why);
    }
    await sleep(2000);
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The ride-outs (an active agent serving past its lease on its peers' word, src/agent/ride-out.ts)
 * in the app machines' agent journals since `fromMs` (wall clock): when each began and when etcd
 * answered again and ended it (null: not yet).
 */
async function rideOuts(fromMs: number): Promise<{ machine: string; fromMs: number; endedMs: number | null }[]> {
  const out: { machine: string; fromMs: number; endedMs: number | null }[] = [];
  for (const m of withRole(lab.cluster, 'app')) {
    let open: { machine: string; fromMs: number; endedMs: number | null } | undefined;
    for (const l of await unitJournal(m.name, UNITS.agent, fromMs)) {
      if (l.message.includes('"event":"ride-out"')) out.push((open = { machine: m.name, fromMs: l.atMs, endedMs: null }));
      else if (l.message.includes('"event":"ride-out-ended"') && open) {
        open.endedMs = l.atMs;
        open = undefined;
      }
    }
  }
  return out;
}

const outageTitle = (fault: DbFault): string =>
  OUTAGE_TITLE[fault] ?? `${fault} for 30 s: writes through :5000 and :80 go on with the same primary, nothing moves, no acknowledged write lost`;

const OUTAGE_TITLE: Record<string, string> = {
  'etcd-member-kill':
    "etcd-member-kill (the raft leader's member) for 30 s: etcd keeps its quorum and answers the agents again while the member is down, writes through :5000 and :80 go on with the same primary, nothing moves",
};

for (const fault of [...DB_ETCD_OUTAGES, ...DB_ETCD_MEMBER_FAULTS] as DbFault[]) {
  const memberLost = fault === 'etcd-member-kill';
  test(outageTitle(fault), async () => {
    await labSettled(lab);
    assert.ok(OUTAGE_MS > lab.cluster.timers.ttlSeconds * 1000, "the outage outlasts Patroni's leader lease");
    const wall0 = Date.now();
    // The application tier beside it (the agents' ride-out, src/agent/ride-out.ts): the checker writes through :80 and samples.
    const checker = new Checker(lab);
    await checker.start();
    const checkFrom = performance.now();
    await waitFor('steady writes through :80', async () => (checker.writes.length >= 20 ? true : undefined), 60_000, 100);
    let r: Awaited<ReturnType<typeof runDbFault>>;
    let quorum: Awaited<ReturnType<typeof quorumProbe>> | undefined;
    try {
      r = await runDbFault(lab, fault, {
        holdMs: OUTAGE_MS,
        say: (l) => console.log(`# ${l}`),
        ...(memberLost
          ? {
              during: async () => {
                quorum = await quorumProbe(OUTAGE_MS);
              },
            }
          : {}),
      });
      const end = r.window.toMs;
      await waitFor(
        'writes through :80 after the outage',
        async () => (checker.writes.filter((w) => w.ackMs > end).length >= 20 ? true : undefined),
        60_000,
        100,
      );
    } finally {
      await checker.stop();
    }
    const app = checker.check({ sinceMs: checkFrom });
    const within = (t: number) => t >= r.window.fromMs && t <= r.window.toMs;
    const http = { acked: checker.writes.filter((w) => within(w.ackMs)).length, failed: checker.failedWritesAtMs.filter(within).length };
    console.log(`# ${fault}: :80 ${http.acked} of ${http.acked + http.failed} writes acknowledged while etcd was out; ${app.text.split('\n')[0]}`);
    if (app.violations.length > 0 || http.acked < 0.9 * (http.acked + http.failed)) await printJournals(journalUnits(), wall0, Date.now());
    assert.deepEqual(app.violations, [], app.text);
    if (memberLost) {
      console.log(`# ${fault}: killed ${r.etcdKilled.join(', ')}; writes through the members left: ${quorum?.ok} committed, ${quorum?.failed.length} failed`);
      assert.ok(quorum && quorum.ok >= 5, `writes through the members left were tried and committed (${quorum?.ok})`);
      assert.deepEqual(
        quorum.failedAfterElection,
        [],
        `every write through the members left committed once they had elected a leader: they kept the quorum (${quorum.failed.join('; ') || 'none failed'})`,
      );
      // Killing the raft leader leaves etcd without one until the others elect one (about a
      // second): an agent's renewal may fail meanwhile and it rides out, but etcd answers again
      // while the member is still down, so every ride-out ends before the fault does.
      const wallOf = (t: number) => Date.now() - (performance.now() - t);
      const faultEndWall = wallOf(r.window.toMs);
      const rode = await rideOuts(wall0);
      const text = rode.map(
        (x) => `${x.machine} from ${new Date(x.fromMs).toISOString()} to ${x.endedMs === null ? '(not ended)' : new Date(x.endedMs).toISOString()}`,
      );
      console.log(
        `# ${fault}: fault from ${new Date(wallOf(r.window.fromMs)).toISOString()} to ${new Date(faultEndWall).toISOString()}; ride-outs: ${text.join('; ') || 'none'}`,
      );
      const late = rode.filter((x) => x.endedMs === null || x.endedMs > faultEndWall);
      if (late.length > 0) await printJournals(journalUnits(), wall0, Date.now());
      assert.deepEqual(
        late.map((x) => x.machine),
        [],
        `every ride-out ended while the member was still down: etcd answered the agents again (${text.join('; ')})`,
      );
    }
    assert.ok(
      http.acked >= 0.9 * (http.acked + http.failed),
      `writes through :80 went on while etcd was out (${http.acked} of ${http.acked + http.failed} acknowledged)`,
    );
    console.log(`# ${fault}: ${JSON.stringify({ ...r, missing: r.missing.length, proxyLog: undefined })}`);
    for (const l of r.proxyLog) console.log(`#   haproxy: ${l}`);
    assert.ok(r.samples > 30, `HAProxy's servers were sampled (${r.samples} samples)`);
    assert.ok(r.mostPrimariesUp <= 1, `at most one running primary up behind :5000 at any sample (saw ${r.mostPrimariesUp})`);
    assert.equal(r.backAfterMs, null, 'no other server acknowledged a write: nothing moved');
    assert.equal(r.releases, 0, 'the observer released nothing');
    // A share of the writes tried, not a speed: without failsafe mode the primary demotes itself
    // once its leader lock cannot be renewed, and writes stop until etcd is back.
    const tried = r.inHold.acked + r.inHold.failed;
    if (r.inHold.acked < 0.9 * tried) await printJournals(journalUnits(), wall0, Date.now());
    assert.ok(
      r.inHold.acked >= 0.9 * tried,
      `writes through :5000 went on while etcd was out (${r.inHold.acked} of ${tried} acknowledged, longest gap ${r.longestGapInHoldMs} ms)`,
    );
    assert.deepEqual(r.missing, [], `every acknowledged write is in the database (${r.missing.length} of ${r.acked} missing)`);
    assert.equal(r.notHealed, null, 'the database tier is whole again: a primary with its synchronous standby');
    assert.equal(r.primaryAfter, r.old, 'the same machine is primary afterwards');
    if (memberLost) assert.equal(r.etcdKilled.length, 1, `one member killed (${r.etcdKilled.join(', ')})`);
  });
}
