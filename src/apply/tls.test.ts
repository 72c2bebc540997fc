import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster } from '../config/schema.ts';
import { createClusterCa, issueCertificate, pemBundle, type ClusterCa } from '../pki/ca.ts';
import { clusterFixture } from '../testing/clusters.ts';
import { createSelfSignedBundle } from '../render/tls.ts';
import { LocalShell, rejectionOf } from '../testing/helpers.ts';
import { backendCaFile, issueSiteBundle, ownBundle, siteBundleState } from './tls.ts';

describe('the certificate bundle for :443', () => {
  let dir: string;
  let ca: ClusterCa;
  let cluster: Cluster;
  const shell = new LocalShell('observer');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-tls-apply-'));
    ca = await createClusterCa({ clusterName: 'servicedesk' });
    cluster = {
      ...clusterFixture('distributed', { proxy: { tlsBundle: join(dir, 'proxy.pem'), tlsDnsNames: ['servicedesk.example.com'] } }),
      source: join(dir, 'vigil.yaml'),
    };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const withOwn = (cert: string, key: string): Cluster => ({ ...cluster, proxy: { ...cluster.proxy, tlsCertificate: cert, tlsKey: key, tlsDnsNames: [] } });

  it('your certificate and key become one checked bundle; paths are relative to the cluster file', async () => {
    const site = await issueCertificate(ca, { commonName: 'servicedesk.example.com', ipAddresses: [], dnsNames: ['servicedesk.example.com'], usage: 'server' });
    await writeFile(join(dir, 'site.crt'), site.certPem);
    await writeFile(join(dir, 'site.key'), site.keyPem, { mode: 0o600 });
    const own = await ownBundle(withOwn('site.crt', 'site.key'));
    assert.equal(own?.text, pemBundle(site.certPem, site.keyPem));
    assert.equal(await ownBundle(cluster), undefined, 'none given: the cluster CA issues it');
  });

  it('a key others can read, a key of another certificate and a missing file are refused with the file and the fix, never the key', async () => {
    const other = await issueCertificate(ca, { commonName: 'other', ipAddresses: ['10.0.0.99'], usage: 'server' });
    await writeFile(join(dir, 'open.key'), await readFile(join(dir, 'site.key'), 'utf8'), { mode: 0o644 });
    await chmod(join(dir, 'open.key'), 0o644);
    const open = await rejectionOf(ownBundle(withOwn('site.crt', 'open.key')));
    assert.equal(open.code, 'TLS_BUNDLE');
    assert.match(open.message, /open\.key: the private key file has mode 0644/);
    assert.match(open.message, /chmod 600 .*open\.key/);

    await writeFile(join(dir, 'other.key'), other.keyPem, { mode: 0o600 });
    const mismatch = await rejectionOf(ownBundle(withOwn('site.crt', 'other.key')));
    assert.match(mismatch.message, /site\.crt with .*other\.key: the private key does not belong to the certificate/);
    assert.doesNotMatch(mismatch.message, /PRIVATE KEY/);

    const missing = await rejectionOf(ownBundle(withOwn('nope.crt', 'site.key')));
    assert.match(missing.message, /nope\.crt: the certificate file \(proxy\.tlsCertificate\) does not exist/);
    assert.match(missing.message, /correct proxy\.tlsCertificate in .*vigil\.yaml/);
  });

  it('from the cluster CA: issued when missing, kept while current, reissued for a missing name or a loose mode', async () => {
    const path = cluster.proxy.tlsBundle!;
    assert.deepEqual(await siteBundleState(shell, cluster, ca), { kind: 'reissue', reason: 'none yet' });
    await writeFile(path, await issueSiteBundle(cluster, ca), { mode: 0o600 });
    assert.deepEqual(await siteBundleState(shell, cluster, ca), { kind: 'current' });
    const wider = { ...cluster, proxy: { ...cluster.proxy, tlsDnsNames: ['servicedesk.example.com', 'help.example.com'] } };
    assert.deepEqual(await siteBundleState(shell, wider, ca), { kind: 'reissue', reason: 'it does not name help.example.com' });
    const soon = new Date(Date.now() + 720 * 86_400_000);
    assert.match(((await siteBundleState(shell, cluster, ca, soon)) as { reason: string }).reason, /^it expires on /);
    await chmod(path, 0o644);
    assert.deepEqual(await siteBundleState(shell, cluster, ca), { kind: 'reissue', reason: 'it is root:root 644' });
  });

  it('a bundle put there by hand is kept while usable, and stops apply with the fix when it is not', async () => {
    const path = cluster.proxy.tlsBundle!;
    await createSelfSignedBundle(path, 'servicedesk.example.com', ['10.0.0.10']);
    const kept = await siteBundleState(shell, cluster, ca);
    assert.equal(kept.kind, 'foreign');
    const [cert] = (await readFile(path, 'utf8')).split(/(?<=-----END CERTIFICATE-----\n)/);
    const other = await issueCertificate(ca, { commonName: 'x', ipAddresses: ['10.0.0.98'], usage: 'server' });
    await writeFile(path, `${cert}${other.keyPem}`, { mode: 0o600 });
    const bad = await rejectionOf(siteBundleState(shell, cluster, ca));
    assert.match(bad.message, /observer .*proxy\.pem: the bundle has no private key that belongs to its certificate; it was not made by apply/);
    assert.match(bad.message, /remove it so apply issues one from the cluster CA, or give your certificate and key as proxy\.tlsCertificate and proxy\.tlsKey/);
    await writeFile(path, 'not a certificate\n', { mode: 0o600 });
    assert.match((await rejectionOf(siteBundleState(shell, cluster, ca))).message, /holds no certificate openssl can read/);
  });
});

describe("backendCaFile: your CA for the app machines' certificates", () => {
  let dir: string;
  let clusterCa: ClusterCa;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-backend-ca-'));
    clusterCa = await createClusterCa({ clusterName: 'test' });
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const withCa = (ca: string): Cluster => ({
    ...clusterFixture('pair', { application: { backendTls: { ca, certificate: '/etc/ssl/a.pem', key: '/etc/ssl/a.key' } } }),
    source: join(dir, 'vigil.yaml'),
  });

  it('none with the cluster CA; yours checked and written with the cluster CA appended', async () => {
    assert.equal(await backendCaFile(clusterFixture('pair', { application: { backendTls: {} } }), async () => clusterCa.certPem), undefined);
    const ours = await createClusterCa({ clusterName: 'ours' });
    await writeFile(join(dir, 'our-ca.pem'), ours.certPem);
    const f = await backendCaFile(withCa('our-ca.pem'), async () => clusterCa.certPem);
    assert.equal(f?.path, '/etc/vigil/tls/backend-ca.pem');
    assert.equal(f?.mode, 0o644);
    assert.ok(typeof f?.content === 'string' && f.content.startsWith(ours.certPem.trim()) && f.content.includes(clusterCa.certPem.trim()));
  });

  it('refuses a missing file and a server certificate given as the CA, naming the file and the field', async () => {
    const missing = await rejectionOf(backendCaFile(withCa('nope.pem'), async () => clusterCa.certPem));
    assert.match(String(missing), /nope\.pem \(application\.backendTls\.ca in .*vigil\.yaml\): the CA file cannot be read/);
    const leaf = await issueCertificate(clusterCa, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'server' });
    await writeFile(join(dir, 'leaf.pem'), leaf.certPem);
    const notCa = await rejectionOf(backendCaFile(withCa('leaf.pem'), async () => clusterCa.certPem));
    assert.match(String(notCa), /CN=app1.* is not a CA certificate/);
  });
});
