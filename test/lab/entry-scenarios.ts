/**
 * The floating entry address (issue 14, part 1) on a lab with two proxy machines, run by
 * test/lab/app-failover.test.ts on its `distributed` lab (`proxies: 2`), so no lab is brought up
 * for it alone. keepalived holds the lab's entry address on exactly one proxy machine; when that
 * machine's HAProxy is stopped, hangs (SIGSTOP) or the machine is killed, the address moves to
 * the other and a client writing tickets through the address's :80 is served again; `vigil lab
 * status` names the holder, and `vigil doctor` fails when two machines hold it. When the holder is
 * cut off from the network (every machine, this host and ARP: it runs on and keeps the address,
 * hearing no one), the other proxy machine takes the address, the checker's writer through it is
 * served again, and once the cut heals one holder is left and the writes go on; the checker finds
 * nothing served twice. Nothing here measures how fast: each step waits for its condition with a
 * generous deadline.
 */
import { execFile } from 'node:child_process';
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { withRole } from '../../src/config/schema.ts';
import type { DoctorReport } from '../../src/doctor/types.ts';
import {
  labEntry,
  labIsolate,
  labKill,
  labObservers,
  labRevive,
  labRun,
  labSignal,
  labStart,
  labStopUnit,
  labUnblock,
  type LabHandle,
} from '../../src/lab/lab.ts';
import { labSettled } from '../../src/lab/settle.ts';
import type { Checker } from '../../src/lab/checker.ts';
import { UNITS } from '../../src/layout/units.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';
import { printJournals } from './journal.ts';
import { CONVERGE_MS, actingObserver, everyProxyFences, jobMoved, nothingServedTwice } from './failover-scenarios.ts';

/** `vigil ARGS` from this checkout, as an operator runs it; exit code and output. */
async function vigil(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, ['bin/vigil.js', ...args], { timeout: 90_000, maxBuffer: 16 << 20 }, (err, stdout) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout }),
    ),
  );
}

async function doctor(): Promise<DoctorReport> {
  return JSON.parse((await vigil(['doctor', '--lab', '--json'])).stdout) as DoctorReport;
}

/** One ticket written through `base` and read back through it; the machine that stored it, or undefined when either request failed. */
async function writeTicket(base: string, title: string): Promise<string | undefined> {
  try {
    const created = await fetch(`${base}/api/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({ title }),
      signal: AbortSignal.timeout(3000),
    });
    if (created.status !== 201) return undefined;
    const { id, node } = (await created.json()) as { id: number; node: string };
    const back = await fetch(`${base}/api/tickets/${id}`, { headers: { connection: 'close' }, signal: AbortSignal.timeout(3000) });
    return back.status === 200 ? node : undefined;
  } catch {
    return undefined;
  }
}

/** Until exactly one proxy machine holds the entry address; returns it. */
async function soleHolder(what: string, deadlineMs = 45_000, not?: string): Promise<string> {
  let last: string[] = [];
  try {
    return await waitFor(
      what,
      async () => {
        last = (await labEntry())!.holders;
        return last.length === 1 && last[0] !== not ? last[0] : undefined;
      },
      deadlineMs,
      200,
    );
  } catch (err) {
    assert.fail(`${(err as Error).message}; holders at the end: ${last.join(', ') || 'none'}`);
  }
}

interface EntryFault {
  name: string;
  inject(holder: string): Promise<void>;
  recover(holder: string): Promise<void>;
}

const FAULTS: EntryFault[] = [
  {
    name: 'its HAProxy is stopped (systemctl stop: it stays down)',
    inject: (h) => labStopUnit(h, 'haproxy'),
    recover: (h) => labStart(h, 'haproxy'),
  },
  {
    name: 'its HAProxy hangs (SIGSTOP, SIGCONT after)',
    inject: async (h) => void (await labSignal(h, 'haproxy', 'SIGSTOP')),
    recover: async (h) => void (await labSignal(h, 'haproxy', 'SIGCONT')),
  },
  {
    name: 'the machine is killed (revived after)',
    inject: (h) => labKill(h),
    recover: (h) => labRevive(h),
  },
];

/** The longest time between two writes acknowledged in order (ms), from `fromMs` to `toMs`. */
function longestGap(ackMs: number[], fromMs: number, toMs: number): number {
  const edges = [fromMs, ...ackMs.filter((t) => t > fromMs && t < toMs), toMs];
  return Math.max(0, ...edges.slice(1).map((t, i) => t - edges[i]!));
}

export function entryPointTests(get: () => { lab: LabHandle; checker: Checker }): void {
  it('the entry address is held by exactly one proxy machine, and the application answers through it', async () => {
    const { lab } = get();
    const entry = (await labEntry())!;
    assert.equal(entry.floating, true);
    assert.equal(entry.entryPoint, lab.cluster.proxy.virtualAddress);
    assert.ok(!withRole(lab.cluster, 'proxy').some((p) => p.address === entry.entryPoint), 'an address of its own');
    const holder = await soleHolder('one holder of the entry address');
    const base = `http://${entry.entryPoint}:${lab.cluster.proxy.httpPort}`;
    await waitFor('a ticket written and read back through the entry address', () => writeTicket(base, 'through the entry address'), 30_000, 250);
    assert.deepEqual((await labEntry())!.holders, [holder]);
    const status = JSON.parse((await vigil(['lab', 'status', '--json'])).stdout) as { entryPoint: string; entryHolder: string | null };
    assert.equal(status.entryPoint, entry.entryPoint);
    assert.equal(status.entryHolder, holder);
  });

  it('doctor fails when a second machine holds the address too, and names both', async () => {
    const { lab } = get();
    const vip = lab.cluster.proxy.virtualAddress!;
    const holder = await soleHolder('one holder of the entry address');
    // What a network that drops VRRP between the proxies leads to: each machine believes it is alone.
    // (One doctor run only: the healthy case is src/doctor/entry.test.ts's, and a run costs seconds.)
    const other = withRole(lab.cluster, 'proxy').find((p) => p.name !== holder)!.name;
    await labRun(other, ['ip', 'addr', 'add', `${vip}/32`, 'dev', 'eth0']);
    try {
      const two = await doctor();
      assert.equal(two.entryPoint?.address, vip);
      assert.deepEqual([...two.entryPoint!.holders].sort(), [holder, other].sort());
      const f = two.findings.find((x) => x.check === 'entry-point' && x.machine === null);
      assert.ok(f, JSON.stringify(two.findings));
      assert.match(f.what, new RegExp(`held by (${holder} and ${other}|${other} and ${holder}) at once`));
      assert.deepEqual(
        two.findings.filter((x) => x.check === 'entry-point' && x !== f),
        [],
        'nothing else wrong with keepalived',
      );
    } finally {
      await labRun(other, ['ip', 'addr', 'del', `${vip}/32`, 'dev', 'eth0']);
    }
    assert.deepEqual((await labEntry())!.holders, [holder]);
  });

  for (const fault of FAULTS)
    it(`the entry address moves to the other proxy machine when the holder's ${fault.name.replace(/^its /, '').replace(/^the machine/, 'machine')}; writes through it are served again`, async () => {
      const { lab } = get();
      const entry = (await labEntry())!;
      const base = `http://${entry.entryPoint}:${lab.cluster.proxy.httpPort}`;
      const holder = await soleHolder('one holder before the fault');
      await waitFor('a write through the entry address before the fault', () => writeTicket(base, `before: ${fault.name}`), 30_000, 250);
      await fault.inject(holder);
      try {
        const next = await soleHolder(`the entry address to leave ${holder} for another proxy machine`, 45_000, holder);
        assert.notEqual(next, holder);
        const stored = await waitFor(`a write through the entry address, now held by ${next}`, () => writeTicket(base, `after: ${fault.name}`), 45_000, 250);
        assert.ok(stored, 'an app machine stored it');
      } finally {
        await fault.recover(holder);
      }
      // The returning machine does not take the address back (nopreempt): one holder, the same.
      const after = await soleHolder('one holder once the old one has recovered');
      assert.notEqual(after, holder, `${holder} took the address back on its return`);
      await waitFor('a write through the entry address after the recovery', () => writeTicket(base, `recovered: ${fault.name}`), 30_000, 250);
    });

  // Twice: when the cut machine has the higher VRRP priority it keeps the address at the heal, while
  // this host's ARP entry names the machine that yields; whichever holds it first, one of the two
  // rounds cuts the first proxy machine (the highest priority) as it holds the address.
  for (const round of [1, 2])
    it(`the holder cut off from the network (every machine, the clients, ARP), round ${round}: the other proxy machine takes the address, writes through it resume, nothing served twice; one holder once healed`, async () => {
      const { lab, checker } = get();
      const entry = (await labEntry())!;
      const base = `http://${entry.entryPoint}:${lab.cluster.proxy.httpPort}`;
      const holder = await soleHolder('one holder before the cut');
      const proxies = withRole(lab.cluster, 'proxy').map((p) => p.name);
      const wall0 = Date.now();
      const from = performance.now();
      const acks = (since: number) => checker.writes.filter((w) => w.writer === 'entry' && w.sentMs > since);
      // The checker's writer through the entry address, beside its writers through each proxy's own.
      const writer = checker.startWriter('entry', base);
      let cutAt = 0;
      let healedAt = 0;
      let next = '';
      let after = '';
      try {
        await waitFor('writes through the entry address before the cut', async () => (acks(from).length >= 10 ? true : undefined), 60_000, 100);
        cutAt = performance.now();
        await labIsolate(holder);
        try {
          // The cut machine still holds the address (it hears no one to yield to): only the others' view counts.
          next = await waitFor(
            `another proxy machine to take the entry address while ${holder} is cut off`,
            async () => {
              const others = (await labEntry())!.holders.filter((h) => h !== holder);
              return others.length === 1 ? others[0] : undefined;
            },
            45_000,
            200,
          );
          await waitFor(`writes through the entry address, now held by ${next}`, async () => (acks(cutAt).length >= 20 ? true : undefined), 60_000, 100);
        } finally {
          healedAt = performance.now();
          await labUnblock(holder);
        }
        // The two MASTERs hear each other again and settle by priority: one holder, either of them.
        after = await soleHolder('one holder once the cut healed', 60_000);
        // A client's ARP entry may still name the machine that yielded: it must find the holder again.
        await waitFor(
          `writes through the entry address after the heal, held by ${after}`,
          async () => (acks(healedAt).length >= 20 ? true : undefined),
          120_000,
          100,
        );
      } catch (err) {
        await printJournals(
          proxies.flatMap((p): [string, string][] => [
            [p, UNITS.keepalived],
            [p, UNITS.haproxy],
          ]),
          wall0,
          Date.now(),
        );
        throw err;
      } finally {
        await writer.stop();
      }
      const ackMs = checker.writes.filter((w) => w.writer === 'entry').map((w) => w.ackMs);
      // Figures for the docs, not assertions: the longest time without an acknowledged write through the address.
      console.log(
        `# cut ${holder} (round ${round}): ${next} took the address; longest gap between writes through it while the cut lasted ${(longestGap(ackMs, cutAt, healedAt) / 1000).toFixed(1)} s; healed: ${after} holds it, longest gap after the heal ${(longestGap(ackMs, healedAt, performance.now()) / 1000).toFixed(1)} s`,
      );
      const report = checker.check({ sinceMs: cutAt });
      assert.deepEqual(report.violations, [], report.text);
      const missing = await checker.missingWrites();
      assert.deepEqual(missing.http, [], `every write acknowledged through :80 can be read back (${missing.http.length} missing)`);
    });
}

/**
 * Observers on the proxy machines (`--observers 2`): the acting observer's machine is killed (its
 * HAProxy, keepalived and etcd member with it; when it held the entry address, that moves too), the
 * other observer takes the leadership once the dead one's lease has ended, and then the active app
 * machine is killed: the application fails over, decided by the observer that took over, and a
 * writer through the entry address is served by the new machine; the checker finds nothing served
 * twice, every acknowledged write is there, and both machines once revived leave one active machine
 * fenced in every proxy.
 */
export function observerMovesTest(get: () => { lab: LabHandle; checker: Checker }): void {
  it("the acting observer's machine is killed, then the active app machine: the other observer acts, the application fails over through the entry address, nothing served twice", async () => {
    const { lab, checker } = get();
    const observers = withRole(lab.cluster, 'observer').map((m) => m.name);
    assert.ok(observers.length >= 2, `two observers: ${observers.join(', ')}`);
    await labSettled(lab);
    const acting = await actingObserver();
    const other = observers.find((o) => o !== acting)!;
    const entry = (await labEntry())!;
    const base = `http://${entry.entryPoint}:${lab.cluster.proxy.httpPort}`;
    const holderBefore = await soleHolder('one holder of the entry address before the fault');
    const wall0 = Date.now();
    const from = performance.now();
    const acks = (since: number) => checker.writes.filter((w) => w.writer === 'entry-observer' && w.sentMs > since);
    const writer = checker.startWriter('entry-observer', base);
    let old = '';
    let revived = false;
    try {
      await waitFor('writes through the entry address before the fault', async () => (acks(from).length >= 10 ? true : undefined), 60_000, 100);
      const faultAt = performance.now();
      await labKill(acting);
      // The dead observer's lease ends (etcd keeps its majority: two members of three), the other takes the leadership.
      let seen = '';
      await waitFor(
        `the observer on ${other} to act once ${acting} is dead`,
        async () => {
          const o = await labObservers();
          seen = o.acting ?? o.error ?? 'none acting';
          return o.acting === other ? true : undefined;
        },
        60_000,
        250,
      ).catch((err: Error) => assert.fail(`${err.message}; last seen: ${seen}`));
      const tookOverS = (performance.now() - faultAt) / 1000;
      // Its first view made (healthy at the active epoch), the active app machine is killed.
      await labSettled(lab);
      old = await waitFor('a machine serving', async () => checker.serving(), 30_000, 50);
      const appAt = performance.now();
      await labKill(old);
      const first = await waitFor('another app machine to serve', async () => checker.firstOtherAfter(appAt, old), 90_000, 50);
      await waitFor(
        `writes through the entry address served by ${first.node}`,
        async () => (acks(appAt).filter((w) => w.node === first.node).length >= 10 ? true : undefined),
        60_000,
        100,
      );
      const holderDuring = (await labEntry())!.holders.join(', ');
      console.log(
        `# killed ${acting} (acting observer; the entry address was on ${holderBefore}, now ${holderDuring}): ${other} acted ${tookOverS.toFixed(1)} s after; then killed ${old}: ${first.node} acknowledged a write ${((first.ackMs - appAt) / 1000).toFixed(1)} s after`,
      );
      await labRevive(old);
      await labRevive(acting);
      revived = true;
      const healedAt = performance.now();
      await sleep(6000); // long enough for a revived machine to try to serve again
      await checker.exactlyOneActive(first.node, healedAt + CONVERGE_MS - performance.now());
      await nothingServedTwice(checker, faultAt, first.node);
      // The revived proxy machine's HAProxy starts from its configuration: fenced once the acting observer reads it.
      await labSettled(lab);
      await waitFor(
        'every proxy to have the new machine alone out of MAINT',
        async () =>
          (await everyProxyFences(lab, first.node)
            .then(() => true)
            .catch(() => undefined))
            ? true
            : undefined,
        60_000,
        1000,
      ).catch(() => everyProxyFences(lab, first.node));
      const job = await jobMoved(checker, first.node, old);
      assert.deepEqual(job.overlaps, [], job.text);
      await soleHolder('one holder of the entry address after the revivals', 60_000);
    } catch (err) {
      const apps = withRole(lab.cluster, 'app').map((m): [string, string] => [m.name, UNITS.agent]);
      await printJournals(
        [
          ...observers.flatMap((o): [string, string][] => [
            [o, UNITS.observer],
            [o, UNITS.keepalived],
          ]),
          ...apps,
        ],
        wall0,
        Date.now(),
      );
      throw err;
    } finally {
      await writer.stop();
      // Leave the lab whole for the next test, whatever failed.
      if (!revived) for (const m of [old, acting].filter(Boolean)) await labRevive(m).catch(() => undefined);
    }
  });
}
