import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../util/exec.ts';
import { VigilError } from '../util/errors.ts';
import {
  PKI_DIR,
  caFiles,
  certificateInfo,
  createClusterCa,
  issueCertificate,
  loadCa,
  loadPki,
  machinePkiFiles,
  pemBundle,
  pkiPaths,
  writePki,
  type ClusterCa,
} from './ca.ts';

describe('cluster CA', () => {
  let dir = '';
  let ca: ClusterCa;
  let other: ClusterCa;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-pki-test-'));
    [ca, other] = await Promise.all([createClusterCa({ clusterName: 'prod' }), createClusterCa({ clusterName: 'other' })]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a self-signed P-256 CA for 10 years that may sign certificates', () => {
    const x = new X509Certificate(ca.certPem);
    assert.equal(x.ca, true);
    assert.ok(x.verify(x.publicKey), 'self-signature');
    assert.ok(x.checkIssued(x));
    assert.equal(x.publicKey.asymmetricKeyType, 'ec');
    assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(x.checkPrivateKey(createPrivateKey(ca.keyPem)));
    const years = (new Date(x.validTo).getTime() - Date.now()) / (365.25 * 86_400_000);
    assert.ok(years > 9.9 && years < 10.1, String(years));
    assert.match(x.subject, /CN=Vigil cluster CA prod/);
  });

  it('issues certificates the CA verifies, with the IPs in the SAN, for 2 years, random serials', async () => {
    const a = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.11', 'fd00::11'], dnsNames: ['app1.lan'], usage: 'server' });
    const b = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'server' });
    const x = new X509Certificate(a.certPem);
    const caX = new X509Certificate(ca.certPem);
    assert.ok(x.checkIssued(caX));
    assert.ok(x.verify(caX.publicKey));
    assert.ok(!x.verify(new X509Certificate(other.certPem).publicKey), 'another CA does not verify it');
    assert.ok(x.checkPrivateKey(createPrivateKey(a.keyPem)));
    assert.equal(x.ca, false);
    assert.ok(x.checkIP('10.0.0.11'));
    assert.equal(x.checkIP('10.0.0.12'), undefined);
    const info = certificateInfo(a.certPem);
    assert.equal(info.commonName, 'app1');
    assert.deepEqual(info.ipAddresses, ['10.0.0.11', 'fd00::11']);
    assert.deepEqual(info.dnsNames, ['app1.lan']);
    assert.equal(info.fingerprint256, x.fingerprint256);
    assert.equal(info.isCa, false);
    const years = (info.notAfter.getTime() - Date.now()) / (365.25 * 86_400_000);
    assert.ok(years > 1.9 && years < 2.1, String(years));
    assert.notEqual(info.serialNumber, certificateInfo(b.certPem).serialNumber);
    assert.ok(info.notBefore.getTime() <= Date.now(), 'valid already');
  });

  it('is accepted by openssl verify, with the extended key usage asked for', async () => {
    const files = {
      'ca.pem': ca.certPem,
      'server.pem': (await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'server' })).certPem,
      'client.pem': (await issueCertificate(ca, { commonName: 'observer1', ipAddresses: ['10.0.0.21'], usage: 'client' })).certPem,
      'both.pem': (await issueCertificate(ca, { commonName: 'db1', ipAddresses: ['10.0.0.31'], usage: 'both' })).certPem,
      'other.pem': (await issueCertificate(other, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'both' })).certPem,
    };
    await writePki(dir, files);
    const verify = (purpose: string, file: string) =>
      run('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), '-purpose', purpose, join(dir, file)], { allowFail: true });
    const ok = async (purpose: string, file: string) => {
      const r = await verify(purpose, file);
      assert.equal(r.code, 0, `${file} ${purpose}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /: OK/);
    };
    const refused = async (purpose: string, file: string) => assert.notEqual((await verify(purpose, file)).code, 0, `${file} ${purpose}`);
    await ok('sslserver', 'server.pem');
    await ok('sslclient', 'client.pem');
    await ok('sslserver', 'both.pem');
    await ok('sslclient', 'both.pem');
    await refused('sslclient', 'server.pem');
    await refused('sslserver', 'client.pem');
    await refused('sslserver', 'other.pem');
  });

  it('writes keys mode 600 and certificates 644, atomically, and loads them back', async () => {
    const d = join(dir, 'machine');
    await writePki(d, await machinePkiFiles(ca, { name: 'app1', address: '10.0.0.11' }, 'both'));
    const p = pkiPaths('app1', d);
    assert.equal((await stat(p.key)).mode & 0o777, 0o600);
    assert.equal((await stat(p.cert)).mode & 0o777, 0o644);
    assert.equal((await stat(p.ca)).mode & 0o777, 0o644);
    assert.deepEqual((await readdir(d)).sort(), ['app1.key', 'app1.pem', 'ca.pem'], 'no temp files left behind');
    const loaded = await loadPki(d);
    assert.equal(loaded.name, 'app1');
    assert.equal(loaded.ca, ca.certPem);
    assert.deepEqual(await loadPki(d, 'app1'), loaded);
    // Rewriting replaces the files whole.
    await writePki(d, await machinePkiFiles(ca, { name: 'app1', address: '10.0.0.11' }));
    assert.notEqual((await loadPki(d)).key, loaded.key);
  });

  it('gives a machine ca.pem and its own certificate and key, never the CA key', async () => {
    const files = await machinePkiFiles(ca, { name: 'app2', address: '10.0.0.12' }, 'server');
    assert.deepEqual(Object.keys(files).sort(), ['app2.key', 'app2.pem', 'ca.pem']);
    assert.ok(!Object.values(files).some((v) => v.includes(ca.keyPem.trim().split('\n')[1]!)), 'CA key material');
    assert.ok(createPrivateKey(files['app2.key']!));
    assert.deepEqual(certificateInfo(files['app2.pem']!).ipAddresses, ['10.0.0.12']);
    await assert.rejects(writePki(PKI_DIR, caFiles(ca)), (e: unknown) => e instanceof VigilError && /CA private key/.test(e.message));
  });

  it('keeps the CA for the admin: caFiles and loadCa round-trip, the key mode 600', async () => {
    const d = join(dir, 'admin');
    await writePki(d, caFiles(ca));
    assert.equal((await stat(join(d, 'ca.key'))).mode & 0o777, 0o600);
    const back = await loadCa(d);
    assert.equal(back.certPem, ca.certPem);
    // A CA loaded back still issues certificates that verify.
    const leaf = await issueCertificate(back, { commonName: 'app3', ipAddresses: ['10.0.0.13'], usage: 'both' });
    assert.ok(new X509Certificate(leaf.certPem).verify(new X509Certificate(ca.certPem).publicKey));
  });

  it('pemBundle puts the certificate then the key, and writePki makes it 600', async () => {
    const leaf = await issueCertificate(ca, { commonName: 'proxy', ipAddresses: [], usage: 'client' });
    const bundle = pemBundle(leaf.certPem, leaf.keyPem);
    assert.ok(bundle.indexOf('BEGIN CERTIFICATE') < bundle.indexOf('BEGIN PRIVATE KEY'));
    await writePki(join(dir, 'bundle'), { 'proxy-bundle.pem': bundle });
    assert.equal((await stat(join(dir, 'bundle', 'proxy-bundle.pem'))).mode & 0o777, 0o600);
  });

  it('refuses to load a key others can read, a mismatched key, or a certificate from another CA', async () => {
    const expectTls = async (d: string, what: RegExp) =>
      assert.rejects(loadPki(d, 'app1'), (e: unknown) => {
        assert.ok(e instanceof VigilError, String(e));
        assert.equal(e.code, 'TLS_BUNDLE');
        assert.match(e.problems[0]!.message, what);
        return true;
      });
    const d = join(dir, 'bad');
    const good = await machinePkiFiles(ca, { name: 'app1', address: '10.0.0.11' });
    await writePki(d, good);
    await chmod(join(d, 'app1.key'), 0o644);
    await expectTls(d, /group or others can read/);
    await writePki(d, good);
    const stranger = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'both' });
    await writePki(d, { 'app1.key': stranger.keyPem });
    await expectTls(d, /does not belong/);
    await writePki(d, { 'app1.key': good['app1.key']!, 'ca.pem': other.certPem });
    await expectTls(d, /not issued by this cluster's CA/);
    await rm(join(d, 'ca.pem'));
    await expectTls(d, /does not exist/);
    const expired = await issueCertificate(ca, {
      commonName: 'app1',
      ipAddresses: ['10.0.0.11'],
      usage: 'both',
      days: 1,
      now: new Date(Date.now() - 3 * 86_400_000),
    });
    await writePki(d, { 'ca.pem': ca.certPem, 'app1.pem': expired.certPem, 'app1.key': expired.keyPem });
    await expectTls(d, /expired/);
  });

  it('refuses names that cannot be a file or distinguished name, and bad addresses', async () => {
    await assert.rejects(issueCertificate(ca, { commonName: 'a,O=evil', ipAddresses: [], usage: 'both' }), VigilError);
    await assert.rejects(issueCertificate(ca, { commonName: 'ca', ipAddresses: [], usage: 'both' }), VigilError);
    await assert.rejects(issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.300'], usage: 'both' }), VigilError);
    await assert.rejects(createClusterCa({ clusterName: '../x' }), VigilError);
    await assert.rejects(writePki(dir, { '../x.pem': 'x' }), VigilError);
    assert.throws(() => pkiPaths('../etc/passwd'), VigilError);
    assert.equal(pkiPaths('app1').key, `${PKI_DIR}/app1.key`);
  });

  it('writes what it is given byte for byte', async () => {
    const d = join(dir, 'bytes');
    await writePki(d, { 'ca.pem': ca.certPem });
    assert.equal(await readFile(join(d, 'ca.pem'), 'utf8'), ca.certPem);
    await writeFile(join(d, 'ca.pem'), 'old');
    await writePki(d, { 'ca.pem': ca.certPem });
    assert.equal(await readFile(join(d, 'ca.pem'), 'utf8'), ca.certPem);
  });
});
