/**
 * Riding out an etcd outage (issue 14 §3): the share of writes through :5000 that succeed while
 * etcd is paused for 30 s (every member SIGSTOPped), with Patroni's DCS failsafe mode on (what
 * Vigil configures) and off (what Patroni does without it: the primary demotes itself once its
 * leader lock cannot be renewed), in the same process on the same lab. Beside it, the share of
 * requests through :80 answered 200 in the same window (the application's health path, which
 * reaches the database). The agents ride the outage out on their own (src/agent/ride-out.ts: the
 * active agent serves on while the other app agent confirms), whether failsafe mode is on or not;
 * with it off, :80 fails because the application's database does.
 *
 * And what failsafe mode costs in this layout (the seed's: etcd, HAProxy and the observer on one
 * machine): the primary cut off from etcd (`etcd-cut`, both ways) is then cut off from HAProxy
 * too, but still reaches its standby, so failsafe mode keeps it primary where HAProxy cannot reach
 * it, and no failover happens while the cut lasts.
 *
 *   npx tsx bench/etcd-outage.ts [--rounds 1] [--hold-ms 30000] [--release trixie|bookworm] [--fault etcd-pause --fault etcd-cut]
 *
 * One writer on :5000 (one INSERT at a time, every 50 ms) and one reader on :80 (every 50 ms).
 */
import { parseArgs } from 'node:util';
import { withRole } from '../src/config/schema.ts';
import { runDbFault, type DbFault, type DbFaultReport } from '../src/lab/db-faults.ts';
import { labDown, labRun, labUp, type LabHandle } from '../src/lab/lab.ts';
import { HttpProbe } from '../src/lab/probe.ts';
import { labSettled } from '../src/lab/settle.ts';
import { PATHS } from '../src/layout/paths.ts';
import type { Release } from '../src/lab/rootfs.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    fault: { type: 'string', multiple: true },
    'hold-ms': { type: 'string', default: '30000' },
    release: { type: 'string', default: 'trixie' },
  },
});
const rounds = Number(values.rounds);
const holdMs = Number(values['hold-ms']);
const release = values.release as Release;
const faults = (values.fault ?? ['etcd-pause', 'etcd-cut']) as DbFault[];
for (const f of faults) if (f !== 'etcd-pause' && f !== 'etcd-cut') throw new Error(`--fault ${f}: etcd-pause or etcd-cut`);

interface Row {
  fault: DbFault;
  failsafe: boolean;
  db: DbFaultReport;
  http: { ok: number; all: number };
}

async function setFailsafe(lab: LabHandle, on: boolean): Promise<void> {
  const db = withRole(lab.cluster, 'db')[0]!;
  const r = await labRun(db.name, ['patronictl', '-c', PATHS.patroniConfig, 'edit-config', '--set', `failsafe_mode=${on}`, '--force']);
  if (r.code !== 0) throw new Error(`patronictl edit-config failsafe_mode=${on} on ${db.name}: ${r.stderr || r.stdout}`);
}

await labDown();
console.log(`--- lab up (distributed, ${release}, synchronous)`);
const lab = await labUp({ topology: 'distributed', release });
const rows: Row[] = [];
try {
  for (let r = 1; r <= rounds; r++) {
    for (const [fault, failsafe] of faults.flatMap((f) => [[f, true] as const, [f, false] as const])) {
      await setFailsafe(lab, failsafe);
      await labSettled(lab, 180_000);
      const proxy = withRole(lab.cluster, 'proxy')[0]!;
      const probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}${lab.cluster.application.healthPath}`);
      probe.start();
      let db: DbFaultReport;
      try {
        db = await runDbFault(lab, fault, { holdMs });
      } finally {
        await probe.stop();
      }
      const inWindow = probe.answers.filter((a) => a.atMs >= db.window.fromMs && a.atMs <= db.window.toMs);
      const row = { fault, failsafe, db, http: { ok: inWindow.filter((a) => a.node !== null).length, all: inWindow.length } };
      rows.push(row);
      console.log(
        `round ${r}, ${fault}, failsafe ${failsafe ? 'on' : 'off'}: :5000 ${row.db.inHold.acked} of ${row.db.inHold.acked + row.db.inHold.failed} writes acknowledged (longest gap ${(row.db.longestGapInHoldMs / 1000).toFixed(1)} s), :80 ${row.http.ok} of ${row.http.all} answered 200; ${row.db.old} -> ${row.db.primaryAfter}, ${row.db.missing.length} lost${row.db.notHealed ? `, NOT HEALED: ${row.db.notHealed}` : ''}`,
      );
    }
  }
} finally {
  await setFailsafe(lab, true).catch(() => {});
  await labDown();
}

const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(0)}%` : 'n/a');
console.log(
  `\nheld ${holdMs / 1000} s, ${release}, ${rounds} round(s) each (etcd-pause: every etcd member SIGSTOPped; etcd-cut: the primary cut off from the etcd machine)`,
);
console.log('| fault | failsafe_mode | :5000 writes acknowledged | longest gap (s) | :80 answered 200 | primary after | acknowledged writes lost |');
console.log('|---|---|---|---|---|---|---|');
for (const [fault, failsafe] of faults.flatMap((f) => [[f, true] as const, [f, false] as const])) {
  const rs = rows.filter((x) => x.fault === fault && x.failsafe === failsafe);
  const acked = rs.reduce((a, x) => a + x.db.inHold.acked, 0);
  const tried = rs.reduce((a, x) => a + x.db.inHold.acked + x.db.inHold.failed, 0);
  const ok = rs.reduce((a, x) => a + x.http.ok, 0);
  const all = rs.reduce((a, x) => a + x.http.all, 0);
  console.log(
    `| ${fault} | ${failsafe ? 'on' : 'off'} | ${pct(acked, tried)} (${acked} of ${tried}) | ${rs.map((x) => (x.db.longestGapInHoldMs / 1000).toFixed(1)).join(', ')} | ${pct(ok, all)} (${ok} of ${all}) | ${rs.map((x) => (x.db.primaryAfter === x.db.old ? 'same' : `${x.db.primaryAfter ?? 'none'}`)).join(', ')} | ${rs.reduce((a, x) => a + x.db.missing.length, 0)} |`,
  );
}
