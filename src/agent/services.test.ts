import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activeStates } from './services.ts';

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
