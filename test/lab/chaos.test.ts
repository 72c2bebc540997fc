/**
 * `vigil lab chaos` (src/lab/chaos.ts), short: a `pair` lab, a fixed seed, about 3 minutes of
 * faults of every kind with the checker on. No violation, no acknowledged write lost, no fault
 * the run failed to inject or recover, and the report has a row for every kind that ran. Nothing
 * here depends on how fast the faults heal: the run waits for the cluster to settle after each.
 *
 * Every kind, `kill-haproxy` included since HAProxy's cold start keeps the app servers in MAINT
 * until the observer readies the active one (docs/chaos.md, Found 3), and `kill-patroni` since
 * Patroni's unit keeps its socket directory when Patroni dies (Found 1).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FAULT_KINDS } from '../../src/lab/chaos-plan.ts';
import { runChaos } from '../../src/lab/chaos.ts';
import { labDown, labHeal, labUp, type LabHandle } from '../../src/lab/lab.ts';

/** The seed of this test's schedule (docs/chaos.md). */
const SEED = 20261207;
const MINUTES = 3;

describe('vigil lab chaos, short', () => {
  let lab: LabHandle;

  before(async () => {
    await labDown();
    lab = await labUp({ topology: 'pair' }, (l) => console.log(`# lab: ${l}`));
  });
  after(async () => {
    await labHeal().catch(() => undefined);
    await labDown();
  });

  it(`a ${MINUTES}-minute run of seed ${SEED} (every kind): no violation, no lost write`, async () => {
    const report = await runChaos(lab, { seed: SEED, minutes: MINUTES, kinds: [...FAULT_KINDS] }, (l) => console.log(`# ${l}`));
    console.log(report.text.replace(/^/gm, '# '));
    assert.ok(report.results.length > 0, 'at least one fault ran');
    const ran = new Set(report.results.map((r) => r.kind));
    assert.deepEqual(new Set(report.summary.map((s) => s.kind)), ran, 'a row per kind that ran');
    for (const s of report.summary) assert.equal(s.count, report.results.filter((r) => r.kind === s.kind).length, s.kind);
    const failed = report.results.filter((r) => r.violations || r.lostHttp || r.lostDb || r.error);
    assert.deepEqual(
      failed.map((r) => `#${r.n} ${r.what}: ${r.error ?? ''}\n${r.detail ?? ''}`),
      [],
      report.text,
    );
    assert.equal(report.totals.violations, 0, report.text);
    assert.equal(report.totals.lostHttp + report.totals.lostDb, 0, report.text);
    assert.ok(report.ok, report.text);
  });
});
