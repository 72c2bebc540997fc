import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from './bundle.ts';
import { PatchDirChecker, describePatchDir, throttledCheck } from './check.ts';
import type { PatchDirState } from '../model/ha.ts';
import { importBundle } from './import.ts';
import { initKeys, readTrust } from './keys.ts';

async function imported(files: Record<string, string>) {
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-check-'));
  const src = join(d, 'src');
  for (const [p, t] of Object.entries(files)) {
    await mkdir(join(src, p, '..'), { recursive: true });
    await writeFile(join(src, p), t);
  }
  await initKeys(join(d, 'k.pem'), join(d, 'trust.json'));
  await createBundle({ dir: src, keyPath: join(d, 'k.pem'), out: join(d, 'b') });
  const target = join(d, 'patches');
  await importBundle({ bundle: join(d, 'b'), target, trust: (await readTrust(join(d, 'trust.json'))).chain, trustPath: join(d, 'trust.json') });
  return target;
}

test('a directory as imported matches; a changed, a removed and an added file are each named', async () => {
  const dir = await imported({ 'catalog.xml': 'v1', 'sub/a.msu': 'aaaa', 'b.msu': 'bb' });
  const c = new PatchDirChecker(dir, ['.vigil-sync-partial']);
  const ok = await c.check();
  assert.equal(ok.matches, true);
  assert.equal(ok.sequence, 1);
  assert.equal(ok.files, 3);
  assert.match(describePatchDir(ok), /sequence 1, 3 file\(s\), matches its manifest/);
  await writeFile(join(dir, 'sub', 'a.msu'), 'AAAA'); // same size, other bytes
  await rm(join(dir, 'b.msu'));
  await writeFile(join(dir, 'stray.msu'), 'x');
  await mkdir(join(dir, '.vigil-sync-partial'));
  await writeFile(join(dir, '.vigil-sync-partial', 'half'), 'skipped');
  const bad = await c.check();
  assert.equal(bad.matches, false);
  assert.deepEqual([bad.different, bad.missing, bad.extra], [['sub/a.msu'], ['b.msu'], ['stray.msu']]);
  assert.match(describePatchDir(bad), /DIFFERS from its manifest: 1 missing \(b\.msu\); 1 different \(sub\/a\.msu\); 1 extra \(stray\.msu\)/);
});

test('a directory with no import, and one whose record was edited, never count as matching', async () => {
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-check-'));
  await writeFile(join(d, 'by-hand.msu'), 'x');
  const none = await new PatchDirChecker(d).check();
  assert.equal(none.matches, false);
  assert.equal(none.sequence, null);
  assert.deepEqual(none.extra, ['by-hand.msu']);
  const dir = await imported({ 'a.msu': 'a' });
  await writeFile(join(dir, '.vigil-airgap', 'manifest.json'), '{}');
  const edited = await new PatchDirChecker(dir).check();
  assert.equal(edited.matches, false);
  assert.match(edited.error ?? '', /does not hold the manifest its state\.json names/);
});

test("the agent's view never waits for a check: the last result, a new check in the background once it is old", async () => {
  let calls = 0;
  let finish: (s: PatchDirState) => void = () => undefined;
  const checker = {
    check: () => {
      calls++;
      return new Promise<PatchDirState>((resolve) => (finish = resolve));
    },
  } as unknown as PatchDirChecker;
  const view = throttledCheck(checker, 0);
  assert.equal(view(), undefined, 'nothing yet, and no waiting for the check under way');
  assert.equal(view(), undefined);
  assert.equal(calls, 1, 'one check at a time');
  finish({ sequence: 3 } as PatchDirState);
  await new Promise((r) => setImmediate(r));
  assert.equal(view()?.sequence, 3);
  assert.equal(calls, 2, 'a result older than maxAgeMs starts the next check');
});
