import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exchangeDirs } from './exchange.ts';

const mvHasExchange = /--exchange/.test(spawnSync('mv', ['--help'], { encoding: 'utf8' }).stdout ?? '');

async function pair(): Promise<{ a: string; b: string; done: () => Promise<void> }> {
  const base = await mkdtemp(join(tmpdir(), 'vigil-exchange-'));
  const a = join(base, 'staging');
  const b = join(base, 'live');
  await mkdir(join(a, 'sub'), { recursive: true });
  await mkdir(b);
  await writeFile(join(a, 'sub', 'new.msu'), 'new set');
  await writeFile(join(b, 'old.msu'), 'old set');
  return { a, b, done: () => rm(base, { recursive: true, force: true }) };
}

for (const tool of ['perl', 'mv', undefined] as const)
  test(
    `two directories swap names in one step (${tool ?? 'whichever this machine has'})`,
    { skip: tool === 'mv' && !mvHasExchange && 'mv here has no --exchange (coreutils < 9.5)' },
    async () => {
      const { a, b, done } = await pair();
      try {
        const [ia, ib] = [(await stat(a)).ino, (await stat(b)).ino];
        const used = exchangeDirs(a, b, tool);
        assert.equal(used, tool ?? (mvHasExchange ? 'mv' : 'perl'));
        assert.equal(await readFile(join(b, 'sub', 'new.msu'), 'utf8'), 'new set');
        assert.equal(await readFile(join(a, 'old.msu'), 'utf8'), 'old set');
        assert.deepEqual([(await stat(a)).ino, (await stat(b)).ino], [ib, ia], 'the same directories, under each other names');
      } finally {
        await done();
      }
    },
  );

test('an exchange that cannot be made changes nothing and says which paths and why', async () => {
  const { a, b, done } = await pair();
  try {
    assert.throws(
      () => exchangeDirs(a, join(b, 'missing'), 'perl'),
      (err: Error) => err.message.includes(`cannot exchange ${a} and ${join(b, 'missing')}: renameat2: No such file`),
    );
    assert.equal(await readFile(join(a, 'sub', 'new.msu'), 'utf8'), 'new set');
    assert.equal(await readFile(join(b, 'old.msu'), 'utf8'), 'old set');
  } finally {
    await done();
  }
});
