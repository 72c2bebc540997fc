import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activeStates } from './services.ts';

const UNITS = [
  { name: 'web', unit: 'nginx.service' },
  { name: 'app', unit: 'vigil-refapp.service' },
];

describe('activeStates (one systemctl is-active for every unit)', () => {
  it('reads one state a line, in the order asked', () => {
    assert.deepEqual(activeStates(UNITS, 'active\ninactive\n'), [
      { name: 'web', running: true },
      { name: 'app', running: false },
    ]);
    assert.deepEqual(activeStates(UNITS, 'failed\nactive\n'), [
      { name: 'web', running: false },
      { name: 'app', running: true },
    ]);
  });

  it('counts as running what `is-active --quiet` counts as success, and nothing else', () => {
    for (const state of ['active', 'reloading', 'refreshing']) assert.equal(activeStates(UNITS, `${state}\n${state}\n`)[0]!.running, true, state);
    for (const state of ['inactive', 'activating', 'deactivating', 'failed', 'maintenance', 'unknown', ''])
      assert.equal(activeStates(UNITS, `${state}\nactive\n`)[0]!.running, false, state);
  });

  it('a missing answer (systemctl failed, or said less) is not running', () => {
    assert.deepEqual(activeStates(UNITS, ''), [
      { name: 'web', running: false },
      { name: 'app', running: false },
    ]);
    assert.deepEqual(activeStates(UNITS, 'active\n'), [
      { name: 'web', running: true },
      { name: 'app', running: false },
    ]);
  });
});
