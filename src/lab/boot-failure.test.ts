import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootFailure } from './lab.ts';

test("a machine that did not boot: the error carries its console's last lines and a fix", () => {
  const lines = Array.from({ length: 40 }, (_, i) => `line ${i}`);
  const e = bootFailure('proxy2', 'timed out after 300000 ms waiting for proxy2 to boot', lines.join('\n') + '\n');
  const p = e.problems[0]!;
  assert.equal(p.where, 'vigil lab up: proxy2');
  assert.match(p.message, /timed out after 300000 ms/);
  assert.match(p.message, /line 39$/);
  assert.match(p.message, /line 25\n/);
  assert.doesNotMatch(p.message, /line 24\n/, 'only the last 15 lines');
  assert.match(p.fix, /console output above/);
});

test('systemd out of inotify instances: the fix names the host limit and how to raise it', () => {
  const console =
    'systemd 257.9 running in system mode\nFailed to create control group inotify object: Too many open files\nFailed to allocate manager object: Too many open files\n';
  const p = bootFailure('proxy2', 'timed out', console).problems[0]!;
  assert.match(p.fix, /fs\.inotify\.max_user_instances/);
  assert.match(p.fix, /sysctl -w fs\.inotify\.max_user_instances=1024/);
});

test('an empty console: the message alone', () => {
  const p = bootFailure('db1', 'timed out', '').problems[0]!;
  assert.equal(p.message, 'timed out');
});
