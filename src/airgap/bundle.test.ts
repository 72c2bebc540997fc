import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VigilError } from '../util/errors.ts';
import { createBundle, partCount } from './bundle.ts';
import { MANIFEST, parseSize, partHeader, unsafePath, type Manifest } from './format.ts';
import { initKeys, readTrust } from './keys.ts';
import { verifyBundle } from './verify.ts';

async function setup() {
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-bundle-'));
  await initKeys(join(d, 'k.pem'), join(d, 'trust.json'));
  await mkdir(join(d, 'src', 'patches'), { recursive: true });
  return d;
}

const bundleError = (text: RegExp) => (err: unknown) => {
  assert.ok(err instanceof VigilError, String(err));
  assert.equal(err.code, 'AIRGAP_BUNDLE');
  assert.match(err.message, text);
  return true;
};

test('every part is at most --max-part-size, header included, and the bundle verifies', async () => {
  const d = await setup();
  await writeFile(join(d, 'src', 'patches', 'big.bin'), randomBytes(50_000));
  await writeFile(join(d, 'src', 'catalog.xml'), '<c/>');
  await writeFile(join(d, 'src', 'empty'), '');
  const r = await createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b'), maxPartBytes: 4096 });
  const parts = (await readdir(join(d, 'b'))).filter((n) => n.startsWith('part-'));
  assert.equal(parts.length, r.manifest.parts.length);
  assert.ok(parts.length >= 13);
  for (const p of parts) assert.ok((await stat(join(d, 'b', p))).size <= 4096, `${p} is larger than 4096 bytes`);
  assert.deepEqual(
    r.manifest.files.map((f) => [f.path, f.size]),
    [
      ['catalog.xml', 4],
      ['empty', 0],
      ['patches/big.bin', 50_000],
    ],
  );
  const { chain } = await readTrust(join(d, 'trust.json'));
  assert.equal((await verifyBundle(join(d, 'b'), { trust: chain, trustSource: 'trust.json' })).status, 'verified');
});

test('partCount: exact fits, one byte over, an empty payload, and a header that grows with the count', () => {
  const id = 'a'.repeat(32);
  const room = (i: number, n: number) => 1024 - partHeader(id, i, n).length;
  assert.equal(partCount(0, 1024, id), 1);
  assert.equal(partCount(room(1, 1), 1024, id), 1);
  assert.equal(partCount(room(1, 2) + 1, 1024, id), 2);
  const n = partCount(10 * 1024 * 1024, 1024, id);
  let total = 0;
  for (let i = 1; i <= n; i++) total += room(i, n);
  assert.ok(total >= 10 * 1024 * 1024 && total - room(n, n) < 10 * 1024 * 1024, `count ${n} does not fit the payload`);
});

test('the sequence goes up by itself, and a sequence not above the last is refused', async () => {
  const d = await setup();
  const a = await createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b1') });
  const b = await createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b2') });
  assert.deepEqual([a.manifest.sequence, b.manifest.sequence], [1, 2]);
  await assert.rejects(
    createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b3'), sequence: 2 }),
    bundleError(/--sequence 2: is not above the last sequence used with this key \(2/),
  );
  const c = await createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b3'), sequence: 10 });
  assert.equal(c.manifest.sequence, 10);
});

test('the manifest holds expiry and creation time, and only the signed fields', async () => {
  const d = await setup();
  const now = new Date('2026-12-07T10:00:00Z');
  await createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b'), expiresInDays: 7, now });
  const m = JSON.parse(await readFile(join(d, 'b', MANIFEST), 'utf8')) as Manifest;
  assert.equal(m.createdAt, '2026-12-07T10:00:00.000Z');
  assert.equal(m.expiresAt, '2026-12-14T10:00:00.000Z');
});

test('a symlink in the directory is refused, and no bundle is left', async () => {
  const d = await setup();
  await symlink('/etc/passwd', join(d, 'src', 'patches', 'link'));
  await assert.rejects(createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b') }), bundleError(/patches\/link: is a symlink/));
  assert.deepEqual((await readdir(d)).sort(), ['k.pem', 'src', 'trust.json']);
});

test('an unfinished download (.partial) is refused', async () => {
  const d = await setup();
  await writeFile(join(d, 'src', 'x.msu.partial'), 'half');
  await assert.rejects(createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b') }), bundleError(/an unfinished download/));
});

test('an existing --out, a missing directory and a tiny --max-part-size are refused with their fix', async () => {
  const d = await setup();
  await mkdir(join(d, 'b'));
  await assert.rejects(
    createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'b') }),
    bundleError(/already exists\n {2}fix: give a new path/),
  );
  await assert.rejects(createBundle({ dir: join(d, 'nope'), keyPath: join(d, 'k.pem'), out: join(d, 'c') }), bundleError(/nope: does not exist/));
  await assert.rejects(
    createBundle({ dir: join(d, 'src'), keyPath: join(d, 'k.pem'), out: join(d, 'c'), maxPartBytes: 100 }),
    bundleError(/the smallest part is 1 KiB/),
  );
});

test('sizes and paths', () => {
  assert.equal(parseSize('650M'), 650 * 1024 * 1024);
  assert.equal(parseSize('4GiB'), 4 * 1024 ** 3);
  assert.equal(parseSize('1024'), 1024);
  assert.equal(parseSize('1.5K'), 1536);
  assert.equal(parseSize('lots'), null);
  assert.equal(unsafePath('a/b.msu'), null);
  for (const bad of ['', '/a', 'a/../b', '..', 'a//b', './a', 'a\\b', '.vigil-airgap/x']) assert.notEqual(unsafePath(bad), null, bad);
});
