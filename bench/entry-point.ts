/**
 * The entry machine killed (issue 14): how long writes through the cluster's entry address stop,
 * on the seed's layout and on the redundant one, in the same script.
 *
 * - `seed`: `distributed`, HAProxy on the observer machine (with etcd and the observer): the entry
 *   address is that machine's own. Killed, nothing can take its place, so writes come back only
 *   when it does: the script waits up to `--cap` seconds (60) and reports "not back within 60 s",
 *   then revives it.
 * - `proxies 2`: `distributed --proxies 2`, two proxy machines of their own sharing the floating
 *   entry address (keepalived). The holder is killed; the other takes the address (target: writes
 *   back under 5 s).
 *
 * A client writes a ticket through the entry address's :80 every 50 ms (POST /api/tickets, a new
 * connection each, 1 s deadline: a request stuck on the dead machine does not hide the recovery).
 * A round's figure: the longest time without an acknowledged write from the kill until a write
 * sent after the kill had completed is acknowledged (a kill takes the lab a moment, and a write
 * sent meanwhile may still be served by the dying machine, so the first write after the kill's
 * start proves nothing). The machine is revived and the lab settled before the next round.
 *
 * The other figure of issue 14's benchmark, the share of writes that succeed during a 30 s etcd
 * hang (18% before the ride-out, target 90%), is bench/etcd-outage.ts's (docs/benchmarks.md).
 *
 *   VIGIL_LAB_ID=N npx tsx bench/entry-point.ts [--rounds 3] [--cap 60] [--layout seed --layout proxies2]
 */
import { parseArgs } from 'node:util';
import { entryAddress } from '../src/config/schema.ts';
import { labDown, labEntry, labKill, labRevive, labUp, type LabHandle } from '../src/lab/lab.ts';
import { labSettled } from '../src/lab/settle.ts';
import type { LabShape } from '../src/lab/topology.ts';
import { sleep, waitFor } from '../src/util/exec.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    cap: { type: 'string', default: '60' },
    layout: { type: 'string', multiple: true },
  },
});
const rounds = Number(values.rounds);
const capMs = Number(values.cap) * 1000;
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error(`--rounds ${values.rounds}: a whole number, 1 or more`);
if (!(capMs > 0)) throw new Error(`--cap ${values.cap}: seconds, more than 0`);

interface Layout {
  name: string;
  shape: LabShape;
  describe: string;
}
const ALL_LAYOUTS: Layout[] = [
  { name: 'seed', shape: { topology: 'distributed' }, describe: "seed's layout: HAProxy, etcd and the observer on one machine" },
  { name: 'proxies2', shape: { topology: 'distributed', proxies: 2 }, describe: 'two proxy machines sharing the floating entry address (keepalived)' },
];
const layouts = values.layout ? values.layout.map((n) => ALL_LAYOUTS.find((l) => l.name === n) ?? fail(`--layout ${n}: seed or proxies2`)) : ALL_LAYOUTS;

function fail(why: string): never {
  throw new Error(why);
}

/** One writer through the entry address: the times its writes were sent and acknowledged. */
class EntryWriter {
  readonly acks: { sentMs: number; ackMs: number }[] = [];
  failed = 0;
  private stopped = false;
  private loop?: Promise<void>;
  constructor(private readonly base: string) {}
  start(): void {
    this.loop = (async () => {
      for (let i = 0; !this.stopped; i++) {
        const sentMs = performance.now();
        try {
          const res = await fetch(`${this.base}/api/tickets`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', connection: 'close' },
            body: JSON.stringify({ title: `entry-point bench #${i}` }),
            signal: AbortSignal.timeout(1000),
          });
          await res.body?.cancel();
          if (res.status === 201) this.acks.push({ sentMs, ackMs: performance.now() });
          else this.failed++;
        } catch {
          this.failed++;
        }
        await sleep(50);
      }
    })();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
  firstSentAfter(t: number): { sentMs: number; ackMs: number } | undefined {
    return this.acks.find((a) => a.sentMs > t);
  }
}

/** The machine clients reach the cluster through: the holder of the floating address, or the one proxy machine. */
async function entryMachine(lab: LabHandle): Promise<string> {
  return waitFor(
    'one machine holding the entry address',
    async () => {
      const e = await labEntry();
      if (!e) return undefined;
      if (!e.floating) return lab.cluster.machines.find((m) => m.address === e.entryPoint)?.name;
      return e.holders.length === 1 ? e.holders[0] : undefined;
    },
    60_000,
    200,
  );
}

/** Seconds to the first write back, or null when none came back within the cap. */
async function measure(layout: Layout): Promise<(number | null)[]> {
  await labDown();
  console.log(`--- ${layout.name} (${layout.describe}): lab up`);
  const lab = await labUp(layout.shape);
  const out: (number | null)[] = [];
  try {
    const writer = new EntryWriter(`http://${entryAddress(lab.cluster)!}:${lab.cluster.proxy.httpPort}`);
    writer.start();
    try {
      for (let r = 1; r <= rounds; r++) {
        await labSettled(lab, 180_000);
        const victim = await entryMachine(lab);
        const steadyFrom = performance.now();
        await waitFor(
          'steady writes through the entry address',
          async () => (writer.acks.filter((a) => a.sentMs > steadyFrom).length >= 10 ? true : undefined),
          120_000,
          100,
        );
        const t0 = performance.now();
        await labKill(victim);
        const killed = performance.now();
        let back: number | null = null;
        try {
          const a = await waitFor('a write back through the entry address', async () => writer.firstSentAfter(killed), capMs, 20);
          // The longest gap between acknowledged writes from the kill to that one.
          const acks = writer.acks.filter((x) => x.ackMs <= a.ackMs).map((x) => x.ackMs);
          let last = Math.max(...acks.filter((x) => x <= t0), t0 - 50);
          let gap = 0;
          for (const x of acks.filter((y) => y > t0)) {
            gap = Math.max(gap, x - last);
            last = x;
          }
          back = gap / 1000;
        } catch {
          back = null;
        }
        out.push(back);
        console.log(
          `${layout.name} round ${r}: ${victim} killed; writes ${back === null ? `not back within ${capMs / 1000} s` : `back: the longest gap ${back.toFixed(2)} s`}`,
        );
        await labRevive(victim);
        const after = performance.now();
        await waitFor(`writes through the entry address once ${victim} is back`, async () => writer.firstSentAfter(after), 300_000, 100);
      }
    } finally {
      await writer.stop();
    }
  } finally {
    await labDown();
  }
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const results: [Layout, (number | null)[]][] = [];
for (const layout of layouts) results.push([layout, await measure(layout)]);

console.log(
  `\nThe entry machine killed: the longest time without an acknowledged write through the entry address's :80 (seconds; ${rounds} rounds each, capped at ${capMs / 1000} s after the kill)`,
);
console.log('| layout | median | worst | rounds |');
console.log('|---|---|---|---|');
for (const [layout, xs] of results) {
  const cap = `not back within ${capMs / 1000} s`;
  const nums = xs.filter((x): x is number => x !== null);
  const all = xs.map((x) => (x === null ? `>${capMs / 1000}` : x.toFixed(2))).join(', ');
  const med = nums.length * 2 > xs.length ? median(xs.map((x) => x ?? Infinity)).toFixed(2) : cap;
  const worst = nums.length === xs.length ? Math.max(...nums).toFixed(2) : cap;
  console.log(`| ${layout.name}: ${layout.describe} | ${med} | ${worst} | ${all} |`);
}
console.log("(The share of writes during a 30 s etcd hang is bench/etcd-outage.ts's figure: docs/benchmarks.md.)");
