/**
 * The database tier fails over behind HAProxy: the primary's machine is killed while a client
 * writes through :5000; writes resume on the other database machine, no acknowledged write is
 * lost (synchronous mode), and the returning machine rejoins as a replica.
 *
 * And, in this layout (etcd, HAProxy and the observer on one machine), the primary cut off from
 * that machine but not from its standby: Patroni's failsafe mode would keep it primary where
 * HAProxy cannot reach it; the observer's release turns failsafe mode off, so the standby takes
 * over while the cut lasts, and turns it on again afterwards.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { withRole } from '../../src/config/schema.ts';
import { runDbFault } from '../../src/lab/db-faults.ts';
import { findPrimary, hasSyncStandby, labDown, labKill, labPatroni, labRevive, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { AckWriter } from '../../src/lab/writer.ts';
import { waitFor } from '../../src/util/exec.ts';

let lab: LabHandle;

before(async () => {
  await labDown();
  lab = await labUp({ topology: 'distributed' }, (l) => console.log(`# lab: ${l}`));
});
after(async () => labDown());

test('killing the primary machine moves writes to the other database machine without losing any', async () => {
  const { cluster, secrets } = lab;
  const proxy = withRole(cluster, 'proxy')[0]!;
  const writer = new AckWriter({
    host: proxy.address,
    port: cluster.proxy.postgresPort,
    user: cluster.database.appUser,
    password: secrets.appDbPassword,
    database: cluster.database.appDatabase,
  });
  await writer.prepare();
  writer.start();
  try {
    await waitFor('writes through :5000', async () => (writer.acked.length >= 20 ? true : undefined), 20_000);
    const old = await findPrimary(cluster);
    assert.ok(old, 'a primary before the fault');
    const killedAt = performance.now();
    await labKill(old.name);
    const deadAt = performance.now(); // writes in flight during the kill may still be acknowledged by the old primary

    const resumed = await waitFor('a write after the kill', async () => writer.firstAfter(deadAt), 90_000, 100);
    const other = withRole(cluster, 'db').find((m) => m.name !== old.name)!;
    assert.equal(resumed.server, other.address, 'the first write after the kill was committed by the other database machine');
    const after = writer.acked.length;
    await waitFor('more writes', async () => (writer.acked.length >= after + 20 ? true : undefined), 20_000);
    console.log(
      `# writes resumed ${((resumed.atMs - killedAt) / 1000).toFixed(1)} s after the kill; ${writer.acked.length} acknowledged, ${writer.failures} failed attempts`,
    );

    await labRevive(old.name);
    const patroni = await labPatroni(cluster, old);
    await waitFor(
      `${old.name} to rejoin as a streaming replica`,
      async () => ((await patroni.check('replica', { timeoutMs: 1000 })) ? true : undefined),
      120_000,
      500,
    );
    const primaryNow = await findPrimary(cluster);
    assert.equal(primaryNow?.name, other.name, 'no fail-back: the new primary stays primary');
    // Full protection again: the returning machine becomes the synchronous standby.
    await waitFor('the returning machine to become the synchronous standby', () => hasSyncStandby(cluster, other), 120_000, 500);
  } finally {
    await writer.stop();
  }
  const missing = await writer.missing();
  assert.deepEqual(missing, [], 'every acknowledged write is in the database');
});

test('the primary cut off from the etcd and proxy machine, not from its standby: the standby takes over while the cut lasts, failsafe mode on again after', async () => {
  await labSettled(lab);
  const holdMs = 12_000;
  assert.ok(holdMs < lab.cluster.timers.ttlSeconds * 1000, "the cut holds less than the leader's lease would live");
  const r = await runDbFault(lab, 'etcd-cut', { holdMs, say: (l) => console.log(`# ${l}`) });
  console.log(`# etcd-cut: ${JSON.stringify({ ...r, missing: r.missing.length, proxyLog: undefined })}`);
  for (const l of r.proxyLog) console.log(`#   haproxy: ${l}`);
  assert.ok(r.releases >= 1, `the observer released the cut-off leader (${r.releases} db-leader-released lines)`);
  assert.ok(
    r.backAfterMs !== null && r.backAfterMs < r.heldMs,
    `writes came back on the other machine while the cut lasted (after ${r.backAfterMs} ms of ${r.heldMs})`,
  );
  assert.ok(r.mostPrimariesUp <= 1, `at most one running primary up behind :5000 at any sample (saw ${r.mostPrimariesUp})`);
  assert.equal(r.oldAcksAfterNew, 0, 'the old primary acknowledged nothing after the new one had');
  assert.deepEqual(r.missing, [], `every acknowledged write is in the database (${r.missing.length} of ${r.acked} missing)`);
  assert.equal(r.notHealed, null, 'the database tier is whole again');
  const primary = await findPrimary(lab.cluster);
  assert.ok(primary, 'a primary');
  await waitFor(
    "Patroni's failsafe mode on again",
    async () => ((await (await labPatroni(lab.cluster, primary)).config({ timeoutMs: 1000 })).failsafeMode ? true : undefined),
    30_000,
    500,
  );
});
