/**
 * The app-tls check (checks/app-tls.ts) on constructed facts: a healthy cluster with an HTTPS
 * endpoint gives no finding; each fault of the seed's "HTTPS port not listening after restart"
 * gives its finding, naming the machine, the file, the key, the fix and the service to restart.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { clusterFixture, secretsFixture } from '../testing/clusters.ts';
import type { Cluster, Secrets } from '../config/schema.ts';
import { createClusterCa, issueCertificate } from '../pki/ca.ts';
import { evaluate } from './evaluate.ts';
import { fixtureContext, fixturePki, healthyFacts, renderedOf, type FixturePki } from '../testing/doctor-facts.ts';
import { failed, got, type Facts, type Finding, type TlsEndpointFact, type TlsPathFact } from './types.ts';

let cluster: Cluster;
let secrets: Secrets;
let pki: FixturePki;

const FILE = '/opt/app/appsettings.json';

before(async () => {
  cluster = clusterFixture('distributed', {
    application: {
      tlsEndpoints: [{ service: 'app', port: 8443, settingsFile: FILE, certificatePathKey: 'Https.CertificateFilePath', keyPathKey: 'Https.KeyFilePath' }],
    },
  });
  secrets = secretsFixture();
  pki = await fixturePki(cluster);
});

const facts = (): Facts => structuredClone(healthyFacts(cluster, renderedOf(cluster, secrets), pki));
const endpoint = (f: Facts, machine: string): TlsEndpointFact => f.machines.find((m) => m.name === machine)!.tlsEndpoints![0]!;
const path = (f: Facts, machine: string, what: 'certificate' | 'key'): TlsPathFact => endpoint(f, machine).paths.find((p) => p.what === what)!;

function tlsFindings(f: Facts): Finding[] {
  return evaluate(fixtureContext(cluster, secrets, f)).findings.filter((x) => x.check === 'app-tls');
}

function only(f: Facts): Finding {
  const list = tlsFindings(f);
  assert.equal(list.length, 1, JSON.stringify(list, null, 1));
  return list[0]!;
}

test('healthy: no finding on the active machine (the port listens) nor on the standby', () => {
  const ctx = fixtureContext(cluster, secrets, facts());
  const r = evaluate(ctx);
  assert.deepEqual(r.findings, []);
  for (const m of ['app1', 'app2'])
    assert.deepEqual(
      r.statuses(m).find((c) => c.check === 'app-tls'),
      { check: 'app-tls', status: 'ok' },
    );
});

test('the seed case: CertificateFilePath disabled by a leading underscore, on the active machine', () => {
  const f = facts();
  path(f, 'app1', 'certificate').lookup = { status: 'disabled', how: 'underscore', written: 'Https._CertificateFilePath', line: 4 };
  const x = only(f);
  assert.equal(x.machine, 'app1');
  assert.equal(x.severity, 'fail');
  assert.equal(
    x.what,
    `Https._CertificateFilePath in ${FILE}:4 on app1 is disabled by a leading underscore; rename _CertificateFilePath to CertificateFilePath`,
  );
  assert.equal(
    x.fix,
    `rename _CertificateFilePath to CertificateFilePath in ${FILE} on app1; then restart vigil-refapp.service: on app1: systemctl restart vigil-refapp.service`,
  );
});

test('on a standby the same fault is a failure too, and says the service restarts there only after a failover', () => {
  const f = facts();
  path(f, 'app2', 'key').lookup = { status: 'disabled', how: 'underscore', written: 'Https._KeyFilePath', line: 5 };
  const x = only(f);
  assert.equal(x.machine, 'app2');
  assert.match(x.what, /rename _KeyFilePath to KeyFilePath/);
  assert.match(x.fix, /vigil-refapp\.service runs only on the active machine: it reads the file when it starts on app2 after a failover/);
});

test('a Windows path, a backslash, a missing file, a missing key', () => {
  let f = facts();
  path(f, 'app1', 'certificate').lookup = { status: 'found', value: 'C:\\certs\\app.pem', line: 3 };
  delete path(f, 'app1', 'certificate').exists;
  let x = only(f);
  assert.equal(
    x.what,
    `Https.CertificateFilePath in ${FILE}:3 on app1 is C:\\certs\\app.pem, a Windows path: app1 runs Linux, where paths start with / and use / between directories`,
  );
  assert.match(
    x.fix,
    /set Https\.CertificateFilePath to the certificate's path on app1, e\.g\. \/etc\/app\/tls\/app\.pem in \/opt\/app\/appsettings\.json on app1; then restart vigil-refapp\.service/,
  );

  f = facts();
  path(f, 'app2', 'key').lookup = { status: 'found', value: '/etc/app\\tls\\app2.key' };
  assert.match(only(f).fix, /write the path with \/, e\.g\. \/etc\/app\/tls\/app2\.key/);

  f = facts();
  Object.assign(path(f, 'app1', 'key'), { exists: false, readable: undefined, pem: undefined });
  x = only(f);
  assert.equal(x.what, `Https.KeyFilePath in ${FILE}:3 on app1 names /etc/app/tls/app1.key, which does not exist on app1`);
  assert.match(
    x.fix,
    /^put the key at \/etc\/app\/tls\/app1\.key, or set Https\.KeyFilePath to where the key is in .*systemctl restart vigil-refapp\.service$/,
  );

  f = facts();
  path(f, 'app1', 'key').lookup = { status: 'missing' };
  assert.match(only(f).what, /^\/opt\/app\/appsettings\.json on app1 has no Https\.KeyFilePath/);
});

test("a key file the service's user cannot read: chown and chmod, then the restart", () => {
  const f = facts();
  path(f, 'app1', 'key').readable = got(false);
  const x = only(f);
  assert.equal(
    x.what,
    `/etc/app/tls/app1.key (Https.KeyFilePath in ${FILE}) on app1 is not readable by root, the user vigil-refapp.service runs as (its unit takes away the capabilities that let root read any file)`,
  );
  assert.match(
    x.fix,
    /^on app1: chown root \/etc\/app\/tls\/app1\.key; on app1: chmod u\+r \/etc\/app\/tls\/app1\.key .*systemctl restart vigil-refapp\.service$/,
  );
  const g = facts();
  path(g, 'app1', 'key').readable = failed('`setpriv` is not installed');
  assert.equal(only(g).severity, 'warn');
});

test('a key that does not belong to the certificate; an expired certificate; a near expiry is a warning', async () => {
  const other = await issueCertificate(await createClusterCa({ clusterName: 'x' }), { commonName: 'x', ipAddresses: ['10.0.0.1'], usage: 'server' });
  let f = facts();
  path(f, 'app2', 'key').pem = got(createPublicKey(other.keyPem).export({ type: 'spki', format: 'pem' }).toString());
  let x = only(f);
  assert.equal(
    x.what,
    `the private key /etc/app/tls/app2.key (Https.KeyFilePath in ${FILE}) on app2 does not belong to the certificate /etc/app/tls/app2.pem (Https.CertificateFilePath)`,
  );

  const ca = await createClusterCa({ clusterName: 'y' });
  for (const [days, severity, what] of [
    [10, 'warn', /expires in 9 day\(s\)/],
    [-1, 'fail', /expired on/],
  ] as const) {
    const pair = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'server', days: days > 0 ? days : 1 });
    f = facts();
    path(f, 'app1', 'certificate').pem = got(pair.certPem);
    path(f, 'app1', 'key').pem = got(createPublicKey(pair.keyPem).export({ type: 'spki', format: 'pem' }).toString());
    const ctx = fixtureContext(cluster, secrets, f);
    if (days < 0) ctx.now = new Date(Date.now() + 2 * 86_400_000);
    x = evaluate(ctx).findings.find((y) => y.check === 'app-tls')!;
    assert.equal(x.severity, severity);
    assert.match(x.what, what);
  }
});

test('the port does not listen on the active machine: alone, a restart; after file findings, those first', () => {
  let f = facts();
  const app1 = f.machines.find((m) => m.name === 'app1')!;
  assert.ok(app1.listeners?.ok);
  app1.listeners.value = app1.listeners.value.filter((l) => l.port !== 8443);
  const x = only(f);
  assert.equal(
    x.what,
    `nothing listens on TCP port 8443 on app1, the active machine: the HTTPS endpoint of app (vigil-refapp.service, configured in ${FILE}) is not up`,
  );
  assert.match(x.fix, /^restart vigil-refapp\.service: on app1: systemctl restart vigil-refapp\.service \(`journalctl -u vigil-refapp\.service -n 50`/);

  f = structuredClone(f);
  path(f, 'app1', 'certificate').lookup = { status: 'disabled', how: 'underscore', written: 'Https._CertificateFilePath', line: 4 };
  const list = tlsFindings(f);
  assert.equal(list.length, 2);
  assert.match(
    list[1]!.fix,
    /^put right the findings above about \/opt\/app\/appsettings\.json and the files it names on app1, then restart vigil-refapp\.service/,
  );
  // A standby listens on nothing: no finding there.
  const g = facts();
  const app2 = g.machines.find((m) => m.name === 'app2')!;
  assert.ok(app2.listeners?.ok && !app2.listeners.value.some((l) => l.port === 8443));
  assert.deepEqual(tlsFindings(g), []);
});

test('the settings file missing, not JSON, or not readable by the service', () => {
  let f = facts();
  Object.assign(endpoint(f, 'app2'), { settings: { status: 'missing-file' }, paths: [] });
  assert.equal(only(f).what, `${FILE}, where app reads its HTTPS certificate and key, is missing on app2`);
  f = facts();
  Object.assign(endpoint(f, 'app2'), { settings: { status: 'unparseable', detail: "Expected ',' or '}'", line: 7 }, paths: [] });
  assert.equal(only(f).what, `${FILE}:7 on app2 is not valid JSON: Expected ',' or '}'`);
  f = facts();
  endpoint(f, 'app2').settingsReadable = got(false);
  assert.match(only(f).what, /^\/opt\/app\/appsettings\.json on app2 is not readable by root, the user vigil-refapp\.service runs as \(its unit/);
});

test('with the active machine unknown (etcd down): the file is still checked, the port is not, the restart is where the service runs', () => {
  const f = facts();
  f.cluster.state = failed('etcd does not answer');
  path(f, 'app2', 'key').lookup = { status: 'disabled', how: 'underscore', written: 'Https._KeyFilePath', line: 5 };
  const app1 = f.machines.find((m) => m.name === 'app1')!;
  assert.ok(app1.listeners?.ok);
  app1.listeners.value = [];
  const x = only(f);
  assert.equal(x.machine, 'app2');
  assert.match(
    x.fix,
    /then restart vigil-refapp\.service where it runs, the active machine \(on app2: systemctl restart vigil-refapp\.service if that is app2\)$/,
  );
});
