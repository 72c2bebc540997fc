import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from './bundle.ts';
import { importBundle, readState, type ImportStep } from './import.ts';
import { initKeys, readTrust } from './keys.ts';

async function setup() {
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-import-'));
  const key = join(d, 'k.pem');
  const trust = join(d, 'trust.json');
  await initKeys(key, trust);
  const make = async (name: string, files: Record<string, string>) => {
    const src = join(d, `src-${name}`);
    for (const [p, t] of Object.entries(files)) {
      await mkdir(join(src, p, '..'), { recursive: true });
      await writeFile(join(src, p), t);
    }
    await createBundle({ dir: src, keyPath: key, out: join(d, name), maxPartBytes: 4096 });
    return join(d, name);
  };
  const target = join(d, 'cluster', 'patches');
  const run = async (bundle: string, crashAfter?: ImportStep) =>
    importBundle({ bundle, target, trust: (await readTrust(trust)).chain, trustPath: trust, crashAfter });
  const set = async () => {
    const out: Record<string, string> = {};
    for (const e of await readdir(target, { recursive: true, withFileTypes: true })) {
      const p = join(e.parentPath, e.name).slice(target.length + 1);
      if (e.isFile() && !p.startsWith('.vigil-airgap')) out[p] = await readFile(join(target, p), 'utf8');
    }
    return out;
  };
  return { d, target, make, run, set };
}

const OLD = { 'catalog.xml': 'v1', 'a.msu': 'a'.repeat(9000) };
const NEW = { 'catalog.xml': 'v2', 'b.msu': 'b'.repeat(9000), 'sub/c.msu': 'c' };

test('an existing patch directory not made by an import is replaced whole and kept as the previous set', async () => {
  const t = await setup();
  await mkdir(t.target, { recursive: true });
  await writeFile(join(t.target, 'hand-copied.msu'), 'by hand');
  const b = await t.make('b1', OLD);
  await t.run(b);
  assert.deepEqual(await t.set(), OLD);
  assert.equal(await readFile(join(t.d, 'cluster', '.patches.airgap-previous', 'hand-copied.msu'), 'utf8'), 'by hand');
  assert.equal((await readState(t.target))?.sequence, 1);
});

for (const step of ['staged', 'journal', 'exchanged'] as const) {
  test(`a crash after "${step}" leaves the old set or the new one under the target, never a mix nor no directory, and the next import finishes`, async () => {
    const t = await setup();
    await t.run(await t.make('b1', OLD));
    const b2 = await t.make('b2', NEW);
    await assert.rejects(t.run(b2, step), new RegExp(`crash after ${step}`));
    // What a reader sees right after the crash: the old set, whole, or (once exchanged) the new one.
    assert.deepEqual(await t.set(), step === 'exchanged' ? NEW : OLD);
    const r = await t.run(b2);
    assert.deepEqual(await t.set(), NEW);
    assert.equal((await readState(t.target))?.sequence, 2);
    // After "staged" there was no journal yet: the staging directory is dropped and the import done again.
    assert.equal(r.resumed, step !== 'staged');
    assert.equal(r.status, step === 'staged' ? 'imported' : 'already-imported');
    assert.deepEqual((await readdir(join(t.d, 'cluster'))).sort(), ['.patches.airgap-previous', 'patches']);
  });
}

test('a refused bundle after an interrupted import still finishes the interrupted one first', async () => {
  const t = await setup();
  await t.run(await t.make('b1', OLD));
  const b2 = await t.make('b2', NEW);
  await assert.rejects(t.run(b2, 'journal'));
  await assert.rejects(t.run(join(t.d, 'b1')), /AIRGAP_OLDER|older|already imported/);
  assert.deepEqual(await t.set(), NEW);
});

test('a second import while one holds the lock is refused; a lock left by a dead process is taken over', async () => {
  const t = await setup();
  await mkdir(join(t.d, 'cluster'), { recursive: true });
  await writeFile(join(t.d, 'cluster', '.patches.airgap-lock'), String(process.pid));
  const b = await t.make('b1', OLD);
  await assert.rejects(t.run(b), /is held by process \d+: another import runs/);
  await writeFile(join(t.d, 'cluster', '.patches.airgap-lock'), '999999999');
  await t.run(b);
  assert.deepEqual(await t.set(), OLD);
});

test("a directory behind the cluster's record (floor) refuses what the cluster refused and takes the cluster's own bundle", async () => {
  const t = await setup();
  const b1 = await t.make('b1', OLD);
  const b2 = await t.make('b2', NEW);
  const trust = (await readTrust(join(t.d, 'trust.json'))).chain;
  const m2 = JSON.parse(await readFile(join(b2, 'manifest.json'), 'utf8')) as { sequence: number };
  const { createHash } = await import('node:crypto');
  const floor = {
    sequence: m2.sequence,
    manifestSha256: createHash('sha256')
      .update(await readFile(join(b2, 'manifest.json')))
      .digest('hex'),
  };
  const run = (bundle: string) => importBundle({ bundle, target: t.target, trust, trustPath: join(t.d, 'trust.json'), floor });
  // The directory holds nothing: without the floor bundle 1 would be imported.
  await assert.rejects(run(b1), (err: Error & { code?: string }) => err.code === 'AIRGAP_OLDER');
  assert.equal(await readState(t.target), null);
  // The cluster's own bundle is imported here, not taken as already imported.
  const r = await run(b2);
  assert.equal(r.status, 'imported');
  assert.deepEqual(await t.set(), NEW);
  assert.equal((await run(b2)).status, 'already-imported');
});

test('the same bundle again mends a directory that holds its record but not its whole set (a copy cut off by a failover); a whole one is a no-op', async () => {
  const t = await setup();
  const b1 = await t.make('b1', OLD);
  const b2 = await t.make('b2', NEW);
  await t.run(b1);
  await t.run(b2);
  assert.equal((await t.run(b2)).status, 'already-imported');
  // What a standby held when the active machine died in the middle of its copy: the new record, some old files, some new.
  await rm(join(t.target, 'sub'), { recursive: true });
  await writeFile(join(t.target, 'a.msu'), OLD['a.msu']);
  await writeFile(join(t.target, 'catalog.xml'), OLD['catalog.xml']);
  // File sync's partial directories are not part of the set and do not count.
  await mkdir(join(t.target, 'x', '.vigil-sync-partial'), { recursive: true });
  await writeFile(join(t.target, 'x', '.vigil-sync-partial', 'c.msu'), 'half');
  const lines: string[] = [];
  const r = await importBundle({
    bundle: b2,
    target: t.target,
    trust: (await readTrust(join(t.d, 'trust.json'))).chain,
    trustPath: join(t.d, 'trust.json'),
    skip: ['.vigil-sync-partial'],
    progress: (l) => lines.push(l),
  });
  assert.equal(r.status, 'imported');
  assert.equal(r.repaired, true);
  assert.deepEqual(await t.set(), NEW);
  assert.ok(
    lines.some((l) => /holds the record of bundle sequence 2 but not its content .*importing it again/.test(l)),
    lines.join('\n'),
  );
  // Only the partial directory beside a whole set: nothing to do.
  await mkdir(join(t.target, 'sub', '.vigil-sync-partial'), { recursive: true });
  await writeFile(join(t.target, 'sub', '.vigil-sync-partial', 'c.msu'), 'half');
  const again = await importBundle({
    bundle: b2,
    target: t.target,
    trust: (await readTrust(join(t.d, 'trust.json'))).chain,
    trustPath: join(t.d, 'trust.json'),
    skip: ['.vigil-sync-partial'],
  });
  assert.equal(again.status, 'already-imported');
});
