/**
 * Database failover as a client sees it through the proxy's :5000: the time from a fault of the
 * primary to the next write another machine acknowledges, and the acknowledged writes lost, for
 * each fault, with the observer's leader release (`database.failoverBy: observer`) and with
 * Patroni alone (`failoverBy: patroni`), on each lab release, all in one run.
 *
 *   npx tsx bench/db-failover.ts [--rounds 3] [--release trixie --release bookworm]
 *                                [--fault machine-kill ...] [--mode observer --mode patroni] [--hold-ms 30000]
 *
 * Faults (src/lab/db-faults.ts): machine-kill (the primary's machine killed: its ports refuse),
 * postgres-kill (PostgreSQL killed, Patroni still runs), machine-silent (link down: nothing
 * answers, not even a refusal), etcd-cut (the primary cut off from etcd both ways). Each holds
 * --hold-ms (longer than Patroni 4's 20 s lease, so Patroni alone can take over while it holds),
 * then ends (machine revived, link up, cut healed) and the cluster heals before the next round.
 */
import { parseArgs } from 'node:util';
import { DB_RELEASE_FAULTS, runDbFault, type DbFault } from '../src/lab/db-faults.ts';
import { labDown, labUp } from '../src/lab/lab.ts';
import { describePackages, type Release } from '../src/lab/rootfs.ts';
import { labSettled } from '../src/lab/settle.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    release: { type: 'string', multiple: true },
    fault: { type: 'string', multiple: true },
    mode: { type: 'string', multiple: true },
    'hold-ms': { type: 'string', default: '30000' },
  },
});
const rounds = Number(values.rounds);
const holdMs = Number(values['hold-ms']);
const releases = (values.release ?? ['trixie', 'bookworm']) as Release[];
const faults = (values.fault ?? [...DB_RELEASE_FAULTS]) as DbFault[];
const modes = (values.mode ?? ['patroni', 'observer']) as ('observer' | 'patroni')[];

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

interface Row {
  release: Release;
  versions: string;
  mode: string;
  fault: DbFault;
  times: (number | null)[];
  lost: number;
  releases: number;
  twoPrimaries: number;
}
const rows: Row[] = [];
const started = new Date();

for (const release of releases) {
  for (const mode of modes) {
    await labDown();
    console.log(`--- ${release}, failoverBy ${mode}: lab up (distributed, synchronous)`);
    const lab = await labUp({ topology: 'distributed', release, failoverBy: mode });
    const versions = describePackages(lab.state.packages ?? {});
    console.log(
      `    ${versions}; timers ttl ${lab.cluster.timers.ttlSeconds} s, loop_wait ${lab.cluster.timers.loopWaitSeconds} s, retry_timeout ${lab.cluster.timers.retryTimeoutSeconds} s`,
    );
    try {
      for (const fault of faults) {
        const row: Row = { release, versions, mode, fault, times: [], lost: 0, releases: 0, twoPrimaries: 0 };
        rows.push(row);
        for (let r = 1; r <= rounds; r++) {
          await labSettled(lab);
          const rep = await runDbFault(lab, fault, { holdMs });
          // Writes back wherever they went (a PostgreSQL restarted in place counts too).
          const s = rep.resumedAfterMs === null ? null : rep.resumedAfterMs / 1000;
          row.times.push(s);
          row.lost += rep.missing.length;
          row.releases += rep.releases;
          row.twoPrimaries = Math.max(row.twoPrimaries, rep.mostPrimariesUp);
          console.log(
            `${release} ${mode} ${fault} round ${r}: ${rep.old} -> ${rep.primaryAfter}, writes back (any server) after ${s === null ? `none within ${holdMs / 1000} s` : `${s.toFixed(2)} s`}; lost ${rep.missing.length}; released ${rep.releases}${rep.notHealed ? `; NOT HEALED: ${rep.notHealed}` : ''}`,
          );
        }
      }
    } finally {
      await labDown();
    }
  }
}

const fmt = (x: number | null) => (x === null || !Number.isFinite(x) ? `>${holdMs / 1000}` : x.toFixed(2));
console.log(
  `\nDatabase failover through :5000 (${started.toISOString().slice(0, 10)}; ${rounds} rounds each, fault held ${holdMs / 1000} s): seconds from the fault to the first write acknowledged after writes began to fail`,
);
console.log(
  '| release (versions) | failoverBy | fault | median | p95 | worst | rounds | acknowledged writes lost | leases released | most primaries behind :5000 |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  // A round with no takeover while the fault held counts as longer than the hold.
  const stat = (q: number) =>
    fmt(
      quantile(
        r.times.map((t) => t ?? Infinity),
        q,
      ),
    );
  console.log(
    `| ${r.release} (${r.versions}) | ${r.mode} | ${r.fault} | ${stat(0.5)} | ${stat(0.95)} | ${stat(1)} | ${r.times.map(fmt).join(', ')} | ${r.lost} | ${r.releases} | ${r.twoPrimaries} |`,
  );
}
