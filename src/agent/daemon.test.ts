import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stopSteps } from './daemon.ts';

test('the shutdown gives up on a step that hangs, runs the others and stays within its total bound', async () => {
  const ran: string[] = [];
  const logged: string[] = [];
  const started = performance.now();
  const unfinished = await stopSteps(
    [
      ['first', async () => void ran.push('first')],
      ['hangs', () => new Promise(() => ran.push('hangs'))],
      ['fails', () => Promise.reject(new Error('boom'))],
      ['slow', () => new Promise((r) => setTimeout(() => r(ran.push('slow')), 1_000))],
      ['last', async () => void ran.push('last')],
    ],
    { stepMs: 200, totalMs: 300 },
    (event, fields) => void logged.push(`${event} ${String(fields?.step)}`),
  );
  const ms = performance.now() - started;
  assert.deepEqual(unfinished, ['hangs', 'slow']);
  assert.deepEqual(ran, ['first', 'hangs', 'last']);
  assert.deepEqual(logged, ['agent-stop-slow hangs', 'agent-stop-failed fails', 'agent-stop-slow slow']);
  assert.ok(ms < 600, `took ${ms} ms`);
});
