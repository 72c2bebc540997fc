import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialFile } from './serial-file.ts';

test('writes asked at once all succeed, and the file ends with the last one asked', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-serial-'));
  try {
    const write = serialFile(join(dir, 'sub', 'memory.json'));
    const values = Array.from({ length: 50 }, (_, i) => `${JSON.stringify({ highestEpoch: i, pad: 'x'.repeat(i * 1000) })}\n`);
    const results = await Promise.allSettled(values.map((v) => write(v)));
    assert.deepEqual(
      results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
      [],
    );
    assert.equal(await readFile(join(dir, 'sub', 'memory.json'), 'utf8'), values.at(-1));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a failed write is reported to its caller and does not stop the next', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-serial-'));
  try {
    const write = serialFile(join(dir, 'f'));
    await write('one\n');
    const bad = serialFile(join(dir, 'f', 'cannot-be-under-a-file'));
    await assert.rejects(bad('x'));
    await bad('y').catch(() => undefined);
    await write('two\n');
    assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'two\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
