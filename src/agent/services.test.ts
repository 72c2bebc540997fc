import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KEPT_STATES_MAX_AGE_MS, SystemdServices, activeStates, keptStatesHold, type SystemdProbe } from './services.ts';

const UNITS = [
  { name: 'web', unit: 'nginx.service' },
  { name: 'app', unit: 'vigil-refapp.service', runsOn: 'every' as const },
];
/** Whether each of UNITS runs, by systemctl's answer. */
const running = (stdout: string) => activeStates(UNITS, stdout).map((s) => s.running);

describe('activeStates (one systemctl is-active for every unit)', () => {
  it("reads one state a line, in the order asked, each under its unit's name and with its placement", () => {
    assert.deepEqual(activeStates(UNITS, 'active\ninactive\n'), [
      { name: 'web', running: true, runsOn: 'active' },
      { name: 'app', running: false, runsOn: 'every' },
    ]);
    assert.deepEqual(running('failed\nactive\n'), [false, true]);
  });

  it('counts as running what `is-active --quiet` counts as success, and nothing else', () => {
    for (const state of ['active', 'reloading', 'refreshing']) assert.deepEqual(running(`${state}\n${state}\n`), [true, true], state);
    for (const state of ['inactive', 'activating', 'deactivating', 'failed', 'maintenance', 'unknown', ''])
      assert.deepEqual(running(`${state}\nactive\n`), [false, true], state);
  });

  it('a missing answer (systemctl failed, or said less) is not running', () => {
    assert.deepEqual(running(''), [false, false]);
    assert.deepEqual(running('active\n'), [true, false]);
  });
});

describe('keptStatesHold (systemctl asked again only when the cgroups may say something changed)', () => {
  const kept = (lines: string[], cgroups: string[]) => ({ lines, cgroups, atMs: 0 });

  it('holds while every settled state agrees with an unchanged cgroup, until the maximum age', () => {
    const k = kept(['active', 'inactive'], ['7 populated', 'none']);
    assert.equal(keptStatesHold(k, ['7 populated', 'none'], 1), true);
    assert.equal(keptStatesHold(k, ['7 populated', 'none'], KEPT_STATES_MAX_AGE_MS), false);
    assert.equal(keptStatesHold(kept(['failed'], ['none']), ['none'], 1), true);
  });

  it('a unit that died, started, or restarted (a new cgroup) changes its cgroup: asked again', () => {
    const k = kept(['active', 'inactive'], ['7 populated', 'none']);
    assert.equal(keptStatesHold(k, ['7 empty', 'none'], 1), false);
    assert.equal(keptStatesHold(k, ['none', 'none'], 1), false);
    assert.equal(keptStatesHold(k, ['7 populated', '9 populated'], 1), false);
    assert.equal(keptStatesHold(k, ['8 populated', 'none'], 1), false);
  });

  it('never holds a state in between, nor one its cgroup contradicts (a unit whose cgroup is elsewhere)', () => {
    for (const state of ['activating', 'deactivating', 'reloading', 'refreshing', 'unknown', ''])
      assert.equal(keptStatesHold(kept([state], ['7 populated']), ['7 populated'], 1), false, state);
    assert.equal(keptStatesHold(kept(['active'], ['none']), ['none'], 1), false);
    assert.equal(keptStatesHold(kept(['inactive'], ['7 populated']), ['7 populated'], 1), false);
  });
});

describe('SystemdServices.states', () => {
  function probe(cgroups: string[] | undefined) {
    const p = { asked: 0, answer: 'active\ninactive\n', cgroups, now: 0 };
    const systemd: SystemdProbe = {
      isActive: () => (p.asked++, Promise.resolve(p.answer)),
      cgroups: () => Promise.resolve(p.cgroups),
      nowMs: () => p.now,
    };
    return { p, services: new SystemdServices(UNITS, systemd) };
  }

  it('asks systemctl once while the cgroups agree and stay the same, again when one changes, and always when asked for a fresh answer', async () => {
    const { p, services } = probe(['7 populated', 'none']);
    const expected = [true, false];
    for (let i = 0; i < 3; i++)
      assert.deepEqual(
        (await services.states()).map((s) => s.running),
        expected,
      );
    assert.equal(p.asked, 1);
    await services.states({ fresh: true });
    assert.equal(p.asked, 2);
    p.cgroups = ['7 empty', 'none'];
    p.answer = 'failed\ninactive\n';
    assert.deepEqual(
      (await services.states()).map((s) => s.running),
      [false, false],
    );
    assert.equal(p.asked, 3);
  });

  it('keeps nothing without cgroups v2', async () => {
    const { p, services } = probe(undefined);
    await services.states();
    await services.states();
    assert.equal(p.asked, 2);
  });
});
