import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VigilError } from '../util/errors.ts';
import { tempDir } from '../testing/clusters.ts';
import { checkTlsBundle, createSelfSignedBundle } from './tls.ts';

/** Asserts a TLS_BUNDLE error that names the file, says `what` and offers `fix`. */
async function rejects(path: string, what: RegExp, fix: RegExp): Promise<void> {
  await assert.rejects(checkTlsBundle(path), (e: unknown) => {
    assert.ok(e instanceof VigilError, String(e));
    assert.equal(e.code, 'TLS_BUNDLE');
    assert.equal(e.problems.length, 1);
    const p = e.problems[0]!;
    assert.equal(p.where, path);
    assert.match(p.message, what);
    assert.match(p.fix, fix);
    return true;
  });
}

describe('TLS bundles', () => {
  let dir = '';
  let good = '';
  let other = '';
  before(async () => {
    dir = await tempDir('vigil-tls-test-');
    good = join(dir, 'good.pem');
    other = join(dir, 'other.pem');
    await createSelfSignedBundle(good, 'vigil.test', ['10.0.0.10']);
    await createSelfSignedBundle(other, 'other.test', []);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a bundle: mode 600, certificate then key, with the names asked for', async () => {
    assert.equal((await stat(good)).mode & 0o777, 0o600);
    const text = await readFile(good, 'utf8');
    assert.ok(text.indexOf('BEGIN CERTIFICATE') < text.indexOf('PRIVATE KEY'));
    const cert = new X509Certificate(text);
    assert.match(cert.subject, /CN=vigil\.test/);
    assert.match(cert.subjectAltName ?? '', /DNS:vigil\.test/);
    assert.match(cert.subjectAltName ?? '', /IP Address:10\.0\.0\.10/);
    await checkTlsBundle(good);
  });

  it('rejects a missing file', async () => {
    await rejects(join(dir, 'nope.pem'), /does not exist/, /cat server\.crt server\.key > .*nope\.pem && chmod 600/);
  });

  it('rejects mode 644', async () => {
    const open = join(dir, 'open.pem');
    await writeFile(open, await readFile(good));
    await chmod(open, 0o644);
    await rejects(open, /mode 0644: group or others can read its private key/, /chmod 600 .*open\.pem/);
  });

  it('rejects a key that does not belong to the certificate', async () => {
    const certOf = (t: string) => t.slice(0, t.indexOf('-----END CERTIFICATE-----') + 26);
    const keyOf = (t: string) => t.slice(t.indexOf('-----BEGIN PRIVATE KEY-----'));
    const mixed = join(dir, 'mixed.pem');
    await writeFile(mixed, certOf(await readFile(good, 'utf8')) + keyOf(await readFile(other, 'utf8')), { mode: 0o600 });
    await rejects(mixed, /private key does not belong to the certificate \(CN=vigil\.test\)/, /key that was generated together with this certificate/);
  });

  it('rejects a bundle without a key', async () => {
    const text = await readFile(good, 'utf8');
    const certOnly = join(dir, 'cert-only.pem');
    await writeFile(certOnly, text.slice(0, text.indexOf('-----BEGIN PRIVATE KEY-----')), { mode: 0o600 });
    await rejects(certOnly, /no private key/, /cat server\.crt server\.key/);
  });

  it('rejects an expired certificate', async () => {
    const later = new Date(Date.now() + 1000 * 86400 * 1000);
    await assert.rejects(checkTlsBundle(good, later), (e: unknown) => e instanceof VigilError && /expired on/.test(e.message) && /renew/.test(e.message));
  });

  it('refuses a common name that is not a host name', async () => {
    await assert.rejects(createSelfSignedBundle(join(dir, 'x.pem'), '/CN=evil', []), (e: unknown) => e instanceof VigilError && e.code === 'USAGE');
  });
});
