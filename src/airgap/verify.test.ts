/**
 * Every refusal of a bundle, each its own test, each through the local import so that "nothing
 * changed" is checked too: the target keeps the set of the first import (sequence 1), byte for
 * byte, and no staging directory, journal or lock is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VigilError, EXIT_STATUS } from '../util/errors.ts';
import { createBundle } from './bundle.ts';
import { MANIFEST, SIGNATURE, type Manifest } from './format.ts';
import { importBundle } from './import.ts';
import { initKeys, readPrivateKey, readTrust, rotateKeys, signBytes } from './keys.ts';
import { verifyBundle } from './verify.ts';

interface Kit {
  d: string;
  key: string;
  trust: string;
  target: string;
  /** A bundle of `files` with the kit's key, sequence `sequence`. */
  bundle(
    name: string,
    sequence: number,
    files?: Record<string, string>,
    extra?: { maxPartBytes?: number; expiresInDays?: number; key?: string; trustPath?: string; now?: Date },
  ): Promise<string>;
}

async function kit(): Promise<Kit> {
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-verify-'));
  const k: Kit = {
    d,
    key: join(d, 'k.pem'),
    trust: join(d, 'trust.json'),
    target: join(d, 'cluster', 'patches'),
    async bundle(name, sequence, files = { 'catalog.xml': '<catalog v="1"/>', 'bin/kb1.msu': 'x'.repeat(5000) }, extra = {}) {
      const src = join(d, `src-${name}`);
      for (const [p, text] of Object.entries(files)) {
        await mkdir(join(src, p, '..'), { recursive: true });
        await writeFile(join(src, p), text);
      }
      const out = join(d, name);
      await createBundle({ dir: src, keyPath: extra.key ?? k.key, out, sequence, maxPartBytes: extra.maxPartBytes ?? 2048, ...extra });
      return out;
    },
  };
  await initKeys(k.key, k.trust);
  return k;
}

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out[p.slice(dir.length + 1)] = createHash('sha256')
      .update(await readFile(p))
      .digest('hex');
  }
  return out;
}

/** Imports sequence 1, then expects `bundle` to be refused with `code` and the cluster side unchanged. */
async function refused(k: Kit, bundle: string, code: string, text: RegExp, now?: Date): Promise<void> {
  const { chain } = await readTrust(k.trust);
  const before = await tree(join(k.d, 'cluster'));
  const beside = await readdir(join(k.d, 'cluster'));
  const trustBefore = await readFile(k.trust, 'utf8');
  await assert.rejects(importBundle({ bundle, target: k.target, trust: chain, trustPath: k.trust, now }), (err: unknown) => {
    assert.ok(err instanceof VigilError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, text);
    assert.ok(EXIT_STATUS[err.code]! > 1, 'a refusal has its own exit status');
    return true;
  });
  assert.deepEqual(await tree(join(k.d, 'cluster')), before, 'the target changed');
  assert.deepEqual(await readdir(join(k.d, 'cluster')), beside, 'something was left beside the target');
  assert.equal(await readFile(k.trust, 'utf8'), trustBefore);
}

async function withFirstImport(): Promise<Kit> {
  const k = await kit();
  const { chain } = await readTrust(k.trust);
  const b1 = await k.bundle('b1', 1, { 'catalog.xml': 'one', 'old.msu': 'old' });
  const r = await importBundle({ bundle: b1, target: k.target, trust: chain, trustPath: k.trust });
  assert.equal(r.status, 'imported');
  return k;
}

/** Rewrites a bundle's manifest and signs it again with `key` (what only a key holder can do). */
async function resign(bundle: string, key: string, edit: (m: Manifest) => void): Promise<void> {
  const m = JSON.parse(await readFile(join(bundle, MANIFEST), 'utf8')) as Manifest;
  edit(m);
  const text = JSON.stringify(m);
  await writeFile(join(bundle, MANIFEST), text);
  const sig = JSON.parse(await readFile(join(bundle, SIGNATURE), 'utf8')) as { signature: string };
  sig.signature = signBytes(await readPrivateKey(key), text);
  await writeFile(join(bundle, SIGNATURE), JSON.stringify(sig));
}

async function flipByte(file: string, at: number): Promise<void> {
  const b = await readFile(file);
  b[at] = b[at]! ^ 0xff;
  await writeFile(file, b);
}

test('a good bundle imports; its files are the source files, split over several parts', async () => {
  const k = await withFirstImport();
  const files = { 'catalog.xml': '<catalog v="2"/>', 'bin/kb1.msu': 'y'.repeat(7000), 'empty.txt': '' };
  const b2 = await k.bundle('b2', 2, files);
  assert.ok((await readdir(b2)).filter((n) => n.startsWith('part-')).length >= 4);
  const { chain } = await readTrust(k.trust);
  const r = await importBundle({ bundle: b2, target: k.target, trust: chain, trustPath: k.trust });
  assert.equal(r.status, 'imported');
  assert.equal(r.state.sequence, 2);
  for (const [p, text] of Object.entries(files)) assert.equal(await readFile(join(k.target, p), 'utf8'), text);
  const names = Object.keys(await tree(k.target)).filter((p) => !p.startsWith('.vigil-airgap/'));
  assert.deepEqual(names.sort(), Object.keys(files).sort(), 'the old set is gone: old.msu is not mixed in');
});

test('refused: a tampered file (one byte of the payload changed)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await flipByte(join(b2, 'part-0002'), 200);
  await refused(k, b2, 'AIRGAP_TAMPERED', /part-0002: SHA-256 is .* the signed manifest says[\s\S]*file bin\/kb1\.msu: SHA-256/);
});

test('refused: a truncated part (size differs from the manifest)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  const b = await readFile(join(b2, 'part-0003'));
  await writeFile(join(b2, 'part-0003'), b.subarray(0, b.length - 10));
  await refused(k, b2, 'AIRGAP_TAMPERED', /part-0003: is \d+ bytes; the signed manifest says/);
});

test('refused: a tampered manifest (a hash edited, the signature kept)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  const m = await readFile(join(b2, MANIFEST), 'utf8');
  await writeFile(join(b2, MANIFEST), m.replace(/"sequence": 2/, '"sequence": 3'));
  await refused(k, b2, 'AIRGAP_BAD_SIGNATURE', /manifest\.json: does not match its signature/);
});

test('refused: unsigned (no manifest.sig)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await rm(join(b2, SIGNATURE));
  await refused(k, b2, 'AIRGAP_UNSIGNED', /manifest\.sig: is missing: the bundle is not signed/);
});

test('refused: signed by another key (wrong key)', async () => {
  const k = await withFirstImport();
  await initKeys(join(k.d, 'other.pem'), join(k.d, 'other-trust.json'));
  const b2 = await k.bundle('b2', 2, undefined, { key: join(k.d, 'other.pem') });
  await refused(k, b2, 'AIRGAP_UNTRUSTED_KEY', /is signed by key [0-9a-f]{16}; .*trust\.json trusts key/);
});

test('refused: a wrong key carrying its own trust chain (it does not extend the cluster chain)', async () => {
  const k = await withFirstImport();
  await initKeys(join(k.d, 'other.pem'), join(k.d, 'other-trust.json'));
  const b2 = await k.bundle('b2', 2, undefined, { key: join(k.d, 'other.pem'), trustPath: join(k.d, 'other-trust.json') });
  await refused(k, b2, 'AIRGAP_UNTRUSTED_KEY', /is signed by key/);
});

test('refused: expired', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2, undefined, { expiresInDays: 1 });
  await refused(k, b2, 'AIRGAP_EXPIRED', /expired at .*this machine's clock says/, new Date(Date.now() + 2 * 86_400_000));
});

test('refused: expired, with the clock set back after the last import', async () => {
  const k = await kit();
  const { chain } = await readTrust(k.trust);
  const later = new Date(Date.now() + 10 * 86_400_000);
  await importBundle({ bundle: await k.bundle('b1', 1), target: k.target, trust: chain, trustPath: k.trust, now: later });
  const b2 = await k.bundle('b2', 2, undefined, { expiresInDays: 5 });
  // Now is before the expiry, but the last import happened (by this clock then) after it.
  await refused(k, b2, 'AIRGAP_EXPIRED', /but the last import was at .*: the clock went back/, new Date());
});

test('refused: another bundle with the sequence already imported', async () => {
  const k = await withFirstImport();
  // `bundle` refuses a sequence the key used already: make another sequence-1 bundle by a signed edit
  const b0 = await k.bundle('b0', 2, { 'x.msu': 'other' });
  await resign(b0, k.key, (m) => {
    m.sequence = 1;
  });
  await refused(k, b0, 'AIRGAP_OLDER', /already imported from another bundle/);
});

test('refused: a sequence below the last imported', async () => {
  const k = await withFirstImport();
  const { chain } = await readTrust(k.trust);
  const b5 = await k.bundle('b5', 5);
  await importBundle({ bundle: b5, target: k.target, trust: chain, trustPath: k.trust });
  const b3 = await k.bundle('b3', 6);
  await resign(b3, k.key, (m) => {
    m.sequence = 3;
  });
  await refused(k, b3, 'AIRGAP_OLDER', /has sequence 3, older than the last imported \(5\)/);
});

test('the same bundle again is a quiet no-op, not an error, and changes nothing', async () => {
  const k = await withFirstImport();
  const { chain } = await readTrust(k.trust);
  const before = await tree(join(k.d, 'cluster'));
  const r = await importBundle({ bundle: join(k.d, 'b1'), target: k.target, trust: chain, trustPath: k.trust });
  assert.equal(r.status, 'already-imported');
  assert.deepEqual(await tree(join(k.d, 'cluster')), before);
  const v = await verifyBundle(join(k.d, 'b1'), { trust: chain, trustSource: k.trust, last: { sequence: 1 } });
  assert.equal(v.status, 'already-imported');
});

test('refused: a missing part', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await rm(join(b2, 'part-0002'));
  await refused(k, b2, 'AIRGAP_INCOMPLETE', /part-0002: is missing \(\d+ bytes, part 0002 of \d+\)/);
});

test('refused: a part from another bundle', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  const b3 = await k.bundle('b3', 3);
  await cp(join(b3, 'part-0002'), join(b2, 'part-0002'));
  await refused(k, b2, 'AIRGAP_FOREIGN_PART', /part-0002: belongs to bundle [0-9a-f]{32}, not to this one/);
});

test('refused: parts swapped (a part at the wrong place)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await rename(join(b2, 'part-0001'), join(b2, 'tmp'));
  await rename(join(b2, 'part-0002'), join(b2, 'part-0001'));
  await rename(join(b2, 'tmp'), join(b2, 'part-0002'));
  await refused(k, b2, 'AIRGAP_FOREIGN_PART', /part-0001: is part 2 of this bundle, not part 1/);
});

test('refused: a stray part beyond the count (left from a bigger bundle)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await writeFile(join(b2, 'part-0099'), 'stale');
  await refused(k, b2, 'AIRGAP_FOREIGN_PART', /part-0099: is not part of this bundle/);
});

test('refused: a symlink in the bundle directory', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await rename(join(b2, 'part-0001'), join(k.d, 'elsewhere'));
  await symlink(join(k.d, 'elsewhere'), join(b2, 'part-0001'));
  await refused(k, b2, 'AIRGAP_UNSAFE_PATH', /part-0001: is a symlink/);
});

test('refused: a symlink entry in a signed manifest', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await resign(b2, k.key, (m) => {
    m.files[0]!.type = 'symlink';
  });
  await refused(k, b2, 'AIRGAP_UNSAFE_PATH', /files "bin\/kb1\.msu": is a symlink, not a regular file/);
});

test('refused: a `..` path in a signed manifest', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await resign(b2, k.key, (m) => {
    m.files[0]!.path = '../../etc/cron.d/evil';
  });
  await refused(k, b2, 'AIRGAP_UNSAFE_PATH', /climbs out with `\.\.`/);
});

test('refused: an absolute path in a signed manifest', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await resign(b2, k.key, (m) => {
    m.files[0]!.path = '/etc/passwd';
  });
  await refused(k, b2, 'AIRGAP_UNSAFE_PATH', /"\/etc\/passwd": is absolute/);
});

test('refused: a duplicate path in a signed manifest', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await resign(b2, k.key, (m) => {
    m.files[1]!.path = m.files[0]!.path;
  });
  await refused(k, b2, 'AIRGAP_UNSAFE_PATH', /is listed twice/);
});

test('refused: a path under the import state directory', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await resign(b2, k.key, (m) => {
    m.files[0]!.path = '.vigil-airgap/state.json';
  });
  await refused(k, b2, 'AIRGAP_UNSAFE_PATH', /which the import keeps for itself/);
});

test('refused: a signed manifest that is not one (unknown field)', async () => {
  const k = await withFirstImport();
  const b2 = await k.bundle('b2', 2);
  await resign(b2, k.key, (m) => {
    (m as unknown as Record<string, unknown>).postInstall = 'rm -rf /';
  });
  await refused(k, b2, 'AIRGAP_INVALID', /is signed but not a manifest this Vigil reads/);
});

test('a rotation carried in the bundle moves the trust: the new key is accepted, then the old one is refused', async () => {
  const k = await withFirstImport();
  await cp(k.trust, join(k.d, 'outside-trust.json'));
  await rotateKeys(k.key, join(k.d, 'k2.pem'), join(k.d, 'outside-trust.json'));
  const withoutChain = await k.bundle('b2', 2, undefined, { key: join(k.d, 'k2.pem') });
  await refused(k, withoutChain, 'AIRGAP_UNTRUSTED_KEY', /is signed by key/);
  const b3 = await k.bundle('b3', 3, undefined, { key: join(k.d, 'k2.pem'), trustPath: join(k.d, 'outside-trust.json') });
  const { chain } = await readTrust(k.trust);
  const r = await importBundle({ bundle: b3, target: k.target, trust: chain, trustPath: k.trust });
  assert.equal(r.status, 'imported');
  assert.equal((await readTrust(k.trust)).keys.length, 2, 'the cluster trust file now holds the rotation');
  const old = await k.bundle('b4', 4, undefined, { key: k.key });
  await refused(k, old, 'AIRGAP_UNTRUSTED_KEY', /was rotated out/);
});
