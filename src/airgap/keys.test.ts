import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VigilError } from '../util/errors.ts';
import { extendsChain, initKeys, readPrivateKey, readTrust, rotateKeys, verifyChain, type TrustChain } from './keys.ts';

const tmp = () => mkdtemp(join(tmpdir(), 'vigil-airgap-keys-'));

const rejectsWith = async (p: Promise<unknown>, code: string, text: RegExp) => {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof VigilError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, text);
    return true;
  });
};

test('keys init writes a 0600 PEM key and a trust file naming it; the key never appears in the trust file', async () => {
  const d = await tmp();
  const id = await initKeys(join(d, 'k.pem'), join(d, 'trust.json'));
  assert.equal((await stat(join(d, 'k.pem'))).mode & 0o777, 0o600);
  assert.match(await readFile(join(d, 'k.pem'), 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  const { keys } = await readTrust(join(d, 'trust.json'));
  assert.deepEqual(
    keys.map((k) => k.keyId),
    [id],
  );
  assert.doesNotMatch(await readFile(join(d, 'trust.json'), 'utf8'), /PRIVATE/);
});

test('keys init never overwrites a key or a trust file', async () => {
  const d = await tmp();
  await initKeys(join(d, 'k.pem'), join(d, 'trust.json'));
  await rejectsWith(initKeys(join(d, 'k2.pem'), join(d, 'trust.json')), 'AIRGAP_KEY', /trust\.json: already exists/);
  await rejectsWith(initKeys(join(d, 'k.pem'), join(d, 'trust2.json')), 'AIRGAP_KEY', /k\.pem: already exists/);
});

test('a key readable by others is refused with the chmod that fixes it; a missing key names its path', async () => {
  const d = await tmp();
  await initKeys(join(d, 'k.pem'), join(d, 'trust.json'));
  await chmod(join(d, 'k.pem'), 0o644);
  await rejectsWith(readPrivateKey(join(d, 'k.pem')), 'AIRGAP_KEY', /readable by others \(mode 0644\)\n {2}fix: run: chmod 600 .*k\.pem/);
  await rejectsWith(readPrivateKey(join(d, 'nope.pem')), 'AIRGAP_KEY', /nope\.pem: signing key not found/);
  await writeFile(join(d, 'junk.pem'), 'junk', { mode: 0o600 });
  await rejectsWith(readPrivateKey(join(d, 'junk.pem')), 'AIRGAP_KEY', /junk\.pem: is not an ed25519 private key/);
});

test('rotate: the new link is signed by the old key and the new one, and the chain extends the old chain', async () => {
  const d = await tmp();
  const first = await initKeys(join(d, 'k1.pem'), join(d, 'trust.json'));
  const before = (await readTrust(join(d, 'trust.json'))).chain;
  const r = await rotateKeys(join(d, 'k1.pem'), join(d, 'k2.pem'), join(d, 'trust.json'));
  assert.equal(r.from, first);
  const { chain, keys } = await readTrust(join(d, 'trust.json'));
  assert.deepEqual(
    keys.map((k) => k.keyId),
    [first, r.to],
  );
  assert.deepEqual(chain.links[1]!.signatures.map((s) => s.keyId).sort(), [first, r.to].sort());
  assert.ok(extendsChain(before, chain));
  assert.equal((await stat(join(d, 'k2.pem'))).mode & 0o777, 0o600);
});

test('rotate refuses a key that is not the one the trust file trusts now, and writes nothing', async () => {
  const d = await tmp();
  await initKeys(join(d, 'k1.pem'), join(d, 'trust.json'));
  await rotateKeys(join(d, 'k1.pem'), join(d, 'k2.pem'), join(d, 'trust.json'));
  const trustBefore = await readFile(join(d, 'trust.json'), 'utf8');
  await rejectsWith(rotateKeys(join(d, 'k1.pem'), join(d, 'k3.pem'), join(d, 'trust.json')), 'AIRGAP_KEY', /is not the one this trust file trusts now/);
  assert.equal(await readFile(join(d, 'trust.json'), 'utf8'), trustBefore);
  await assert.rejects(stat(join(d, 'k3.pem')), { code: 'ENOENT' });
});

test('a rotation link signed by the new key only is refused', async () => {
  const d = await tmp();
  await initKeys(join(d, 'k1.pem'), join(d, 'trust.json'));
  await rotateKeys(join(d, 'k1.pem'), join(d, 'k2.pem'), join(d, 'trust.json'));
  const chain = JSON.parse(await readFile(join(d, 'trust.json'), 'utf8')) as TrustChain;
  const old = JSON.parse(chain.links[0]!.body) as { keyId: string };
  chain.links[1]!.signatures = chain.links[1]!.signatures.filter((s) => s.keyId !== old.keyId);
  assert.throws(() => verifyChain(chain, 'trust.json'), /links\[1\]: lacks a valid signature by key .* signed by the old key and the new one/);
});

test('an edited link body is refused', async () => {
  const d = await tmp();
  await initKeys(join(d, 'k1.pem'), join(d, 'trust.json'));
  const chain = JSON.parse(await readFile(join(d, 'trust.json'), 'utf8')) as TrustChain;
  chain.links[0]!.body = chain.links[0]!.body.replace('"version":1', '"version":1 ');
  assert.throws(() => verifyChain(chain, 'trust.json'), /links\[0\]: lacks a valid signature/);
});

test('a missing or non-JSON trust file is named with the fix', async () => {
  const d = await tmp();
  await rejectsWith(
    readTrust(join(d, 'none.json')),
    'AIRGAP_KEY',
    /none\.json: trust file not found\n {2}fix: give the trust file written by `vigil airgap keys init`/,
  );
  await writeFile(join(d, 'bad.json'), '{');
  await rejectsWith(readTrust(join(d, 'bad.json')), 'AIRGAP_KEY', /bad\.json: is not JSON/);
  await writeFile(join(d, 'empty.json'), JSON.stringify({ format: 'vigil-airgap-trust/1', links: [] }));
  await rejectsWith(readTrust(join(d, 'empty.json')), 'AIRGAP_KEY', /empty\.json links: holds no key/);
});
