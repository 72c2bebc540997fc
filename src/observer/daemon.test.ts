import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCluster } from '../config/load.ts';
import { decideConfig } from './daemon.ts';

const PAIR = ['topology: pair', 'machines:', '  observer: { address: 10.0.0.10 }', '  app1: { address: 10.0.0.11 }', '  app2: { address: 10.0.0.12 }'];

test("a new machine's time to serve is timers.appStartTimeoutMs, plus the handover beyond the default lease", () => {
  const at = (...timers: string[]) =>
    decideConfig(parseCluster(`${[...PAIR, 'timers:', ...timers.map((t) => `  ${t}`)].join('\n')}\n`, 'c.yaml')).activateTimeoutMs;
  assert.equal(at('appFailAfterMs: 2000'), 10_000);
  assert.equal(at('appStartTimeoutMs: 45000'), 45_000);
  assert.equal(at('appStartTimeoutMs: 45000', 'agentLeaseMs: 6000'), 48_000);
});
