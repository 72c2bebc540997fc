/**
 * The checker (src/lab/checker.ts) sees what it guards against: on a quiet `pair` lab it finds
 * nothing; then HAProxy's runtime API forces the standby UP and READY beside the active machine
 * in the app backend (its health check paused, as a proxy that still reaches an old machine
 * would show it), and the checker reports the overlap with a timeline; its writes are all there.
 * Last, an acknowledged ticket and row deleted behind its back are reported missing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { withRole } from '../../src/config/schema.ts';
import { Checker } from '../../src/lab/checker.ts';
import { labDown, labRuntime, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';

describe('the checker', () => {
  let lab: LabHandle;
  let checker: Checker | undefined;

  before(async () => {
    await labDown();
    lab = await labUp({ topology: 'pair' }, (l) => console.log(`# lab: ${l}`));
    checker = new Checker(lab, { dbWriter: true });
    await checker.start();
  });
  after(async () => {
    await checker?.stop();
    await labDown();
  });

  it('finds no violation on a quiet cluster, and every acknowledged write is there', async () => {
    await labSettled(lab);
    const t0 = performance.now();
    const active = await waitFor('a machine serving', async () => checker!.serving(), 30_000, 50);
    await sleep(3000);
    const report = checker!.check({ sinceMs: t0, takeover: active });
    console.log(`# ${report.text}`);
    assert.ok(report.rounds > 5, `the checker sampled (${report.rounds} rounds)`);
    assert.deepEqual(report.violations, [], report.text);
    assert.ok(checker!.writes.length > 5, `the writers wrote (${checker!.writes.length})`);
    assert.deepEqual(await checker!.missingWrites(), { http: [], db: [] });
    await checker!.exactlyOneActive(active);
  });

  it("flags two servers UP and READY in the proxy's app backend, with a timeline of the rounds around it", async () => {
    const proxy = withRole(lab.cluster, 'proxy')[0]!.name;
    const runtime = labRuntime(proxy);
    const active = await waitFor('a machine serving', async () => checker!.serving(), 30_000, 50);
    const standby = withRole(lab.cluster, 'app').find((m) => m.name !== active)!.name;
    const t0 = performance.now();
    // What a proxy that still reaches an old machine shows (H1): the standby up and ready beside the active one.
    await runtime.disableHealth('app', standby);
    await runtime.command(`set server app/${standby} state ready`);
    await runtime.command(`set server app/${standby} health up`);
    const seen = await waitFor(
      'the checker to flag the overlap',
      async () => checker!.check({ sinceMs: t0 }).violations.find((v) => v.rule === 'proxy-two-up'),
      20_000,
      50,
    );
    const report = checker!.check({ sinceMs: t0 });
    console.log(report.text.replace(/^/gm, '# '));
    assert.deepEqual(seen.machines, [active, standby].sort());
    assert.equal(seen.proxy, proxy);
    assert.match(report.text, new RegExp(`VIOLATION: two app machines UP and READY at once in one proxy's app backend: .* in proxy ${proxy}'s snapshot`));
    assert.match(report.text, new RegExp(`>> round ${seen.firstRound} at `));
    assert.match(report.text, new RegExp(`app\\[[^\\]]*${standby} UP READY`));
    // The agents knew better: the standby's agent was never active, its /role never 200.
    assert.deepEqual(
      report.violations.filter((v) => v.rule !== 'proxy-two-up'),
      [],
    );
    // Undo: the standby back to MAINT with its checks running; the observer's view is whole again.
    await runtime.maint('app', standby);
    await runtime.enableHealth('app', standby);
    await checker!.exactlyOneActive(active);
    assert.deepEqual(await checker!.missingWrites(), { http: [], db: [] });
  });

  it('reports an acknowledged ticket and an acknowledged row that are gone', async () => {
    const { cluster, secrets } = lab;
    const proxy = withRole(cluster, 'proxy')[0]!;
    await checker!.missingWrites(); // everything so far is there (the tests above); only what follows is read back
    const from = checker!.writes.length;
    const ticket = await waitFor('a new acknowledged ticket', async () => checker!.writes[from], 20_000, 50);
    const row = await waitFor('an acknowledged row', async () => checker!.dbWriter!.acked.at(-1), 20_000, 50);
    const db = new pg.Client({
      host: proxy.address,
      port: cluster.proxy.postgresPort,
      user: cluster.database.appUser,
      password: secrets.appDbPassword,
      database: cluster.database.appDatabase,
    });
    await db.connect();
    try {
      assert.equal((await db.query('DELETE FROM tickets WHERE id = $1', [ticket.id])).rowCount, 1);
      assert.equal((await db.query('DELETE FROM vigil_acks WHERE seq = $1', [row.seq])).rowCount, 1);
    } finally {
      await db.end();
    }
    const missing = await checker!.missingWrites();
    assert.deepEqual(
      missing.http.map((w) => w.id),
      [ticket.id],
    );
    assert.deepEqual(missing.db, [row.seq]);
  });
});
