/**
 * Faults that leave a stale primary behind (issue 21), as a client writing through :5000 sees
 * them: Patroni, PostgreSQL or the whole primary machine paused, Patroni killed with PostgreSQL
 * left running; beside the kill of the primary's machine (the failover every other figure is
 * about), run in the same process on the same lab. Each round holds the fault 30 s (the pause, or
 * Patroni dead), then waits for the cluster to be whole again.
 *
 *   npx tsx bench/db-faults.ts [--rounds 3] [--fault patroni-pause ...] [--hold-ms 30000]
 *
 * Per fault: seconds from the fault to the first write acknowledged by the other machine, the
 * acknowledged writes lost, the most servers HAProxy had up behind :5000 at once, and the writes
 * the old primary acknowledged after the new one had (a split brain).
 */
import { parseArgs } from 'node:util';
import { DB_FAULTS, runDbFault, type DbFault, type DbFaultReport } from '../src/lab/db-faults.ts';
import { labDown, labUp } from '../src/lab/lab.ts';
import { labSettled } from '../src/lab/settle.ts';

const ALL: DbFault[] = ['machine-kill', ...DB_FAULTS];
const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, fault: { type: 'string', multiple: true }, 'hold-ms': { type: 'string', default: '30000' } },
});
const rounds = Number(values.rounds);
const faults = (values.fault ?? ALL) as DbFault[];
for (const f of faults) if (!ALL.includes(f)) throw new Error(`--fault ${f}: one of ${ALL.join(', ')}`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

await labDown();
console.log('--- lab up (distributed, synchronous)');
const lab = await labUp({ topology: 'distributed' });
const results = new Map<DbFault, DbFaultReport[]>();
try {
  for (let r = 1; r <= rounds; r++) {
    for (const fault of faults) {
      await labSettled(lab, 180_000);
      const report = await runDbFault(lab, fault, { holdMs: Number(values['hold-ms']) });
      results.set(fault, [...(results.get(fault) ?? []), report]);
      const back = report.backAfterMs === null ? 'never' : `${(report.backAfterMs / 1000).toFixed(2)} s`;
      console.log(
        `${fault} round ${r}: ${report.old} -> ${report.primaryAfter}, writes back after ${back}, ${report.missing.length} lost, at most ${report.mostUp} up (${report.mostPrimariesUp} running primaries), ${report.oldAcksAfterNew} late acks${report.notHealed ? `, NOT HEALED: ${report.notHealed}` : ''}`,
      );
    }
  }
} finally {
  await labDown();
}

console.log(
  `\nStale-primary faults through :5000, ${rounds} round(s) each, held ${Number(values['hold-ms']) / 1000} s (seconds to the first write on the other machine)`,
);
console.log(
  '| fault | median | worst | rounds | acknowledged writes lost | most servers up behind :5000 (running primaries) | late acks from the old primary |',
);
console.log('|---|---|---|---|---|---|---|');
for (const [fault, rs] of results) {
  const times = rs.map((x) => (x.backAfterMs ?? Number.NaN) / 1000);
  const sum = (f: (x: DbFaultReport) => number) => rs.reduce((a, x) => a + f(x), 0);
  console.log(
    `| ${fault} | ${median(times).toFixed(2)} | ${Math.max(...times).toFixed(2)} | ${times.map((t) => t.toFixed(1)).join(', ')} | ${sum((x) => x.missing.length)} | ${Math.max(...rs.map((x) => x.mostUp))} (${Math.max(...rs.map((x) => x.mostPrimariesUp))}) | ${sum((x) => x.oldAcksAfterNew)} |`,
  );
}
