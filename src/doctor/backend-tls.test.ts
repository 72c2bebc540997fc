/**
 * The backend-tls check (checks/backend-tls.ts) on constructed facts: HTTPS from the proxy to the
 * app machines (`application.backendTls`). The active machine's certificate as the proxy's
 * handshake got it, a standby's from its file; each fault names the machine and the fix.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { clusterFixture, secretsFixture } from '../testing/clusters.ts';
import type { Cluster, Secrets } from '../config/schema.ts';
import { createClusterCa, issueCertificate, type CertKeyPair } from '../pki/ca.ts';
import { chainsTo } from './checks/backend-tls.ts';
import { evaluate } from './evaluate.ts';
import { fixtureContext, fixturePki, healthyFacts, renderedOf, type FixturePki } from '../testing/doctor-facts.ts';
import { failed, got, type Facts, type Finding } from './types.ts';

let secrets: Secrets;
let pki: FixturePki;
let nginx: Map<string, CertKeyPair>;
let foreign: CertKeyPair;

const withTls = (backendTls: object): Cluster => clusterFixture('distributed', { application: { backendTls } });

before(async () => {
  secrets = secretsFixture();
  pki = await fixturePki(withTls({}));
  nginx = new Map();
  for (const [name, address] of [
    ['app1', '10.0.0.11'],
    ['app2', '10.0.0.12'],
  ] as const)
    nginx.set(name, await issueCertificate(pki.ca, { commonName: name, ipAddresses: [address], dnsNames: [name], usage: 'server' }));
  const other = await createClusterCa({ clusterName: 'other' });
  foreign = await issueCertificate(other, { commonName: 'app2', ipAddresses: ['10.0.0.12'], dnsNames: ['app2'], usage: 'server' });
});

/** Healthy facts: the proxy reached app1 (active) over TLS; app2's nginx does not run, its file holds its certificate. */
function facts(cluster: Cluster, certs: Partial<Record<'app1' | 'app2', string>> = {}): Facts {
  const f = structuredClone(healthyFacts(cluster, renderedOf(cluster, secrets), pki));
  const pem = (m: 'app1' | 'app2') => certs[m] ?? nginx.get(m)!.certPem;
  f.machines.find((m) => m.name === 'observer')!.backendTls = {
    caFile: '/etc/vigil/pki/ca.pem',
    caPem: got(pki.ca.certPem),
    servers: [
      { machine: 'app1', target: '10.0.0.11:443', chain: got([pem('app1')]) },
      { machine: 'app2', target: '10.0.0.12:443', chain: failed('no TLS handshake with 10.0.0.12:443: connect:errno=111') },
    ],
  };
  for (const m of ['app1', 'app2'] as const) f.machines.find((x) => x.name === m)!.nginxCert = got({ path: '/etc/vigil/tls/nginx.pem', pem: pem(m) });
  return f;
}

const findings = (cluster: Cluster, f: Facts): Finding[] => evaluate(fixtureContext(cluster, secrets, f)).findings.filter((x) => x.check === 'backend-tls');

test('healthy: no finding, the check ran on the proxy', () => {
  const c = withTls({});
  const r = evaluate(fixtureContext(c, secrets, facts(c)));
  assert.deepEqual(
    r.findings.filter((x) => x.check === 'backend-tls'),
    [],
  );
  assert.deepEqual(
    r.statuses('observer').find((x) => x.check === 'backend-tls'),
    { check: 'backend-tls', status: 'ok' },
  );
});

test("a standby's certificate of another CA: a failure naming the machine, its file, the issuer and apply as the fix", () => {
  const c = withTls({});
  const [x, ...rest] = findings(c, facts(c, { app2: foreign.certPem }));
  assert.equal(rest.length, 0, JSON.stringify(rest));
  assert.equal(x!.severity, 'fail');
  assert.equal(x!.machine, 'app2');
  assert.match(
    x!.what,
    /^the certificate \/etc\/vigil\/tls\/nginx\.pem on app2 \(nginx serves it to the proxy once app2 is active\) is not issued by the CA in \/etc\/vigil\/pki\/ca\.pem on observer: it is CN=app2, O=Vigil, issued by CN=Vigil cluster CA other/,
  );
  assert.match(x!.why, /a failover cannot go to it/);
  assert.match(x!.fix, /vigil apply .*nginx\.pem, issued again by the cluster CA for app2/);
});

test("the active machine's certificate for another name, and expiring: named as the proxy got it", async () => {
  const c = withTls({});
  const wrongName = await issueCertificate(pki.ca, { commonName: 'app9', ipAddresses: ['10.0.0.11'], dnsNames: ['app9'], usage: 'server', days: 10 });
  const list = findings(c, facts(c, { app1: wrongName.certPem }));
  assert.equal(list.length, 2, JSON.stringify(list));
  assert.match(
    list[0]!.what,
    /nginx on app1 presents to observer \(10\.0\.0\.11:443\) does not name app1 \(it is CN=app9, O=Vigil\): HAProxy checks the name with verifyhost app1/,
  );
  assert.equal(list[0]!.severity, 'fail');
  assert.match(list[1]!.what, /expires in 9 day\(s\)/);
  assert.equal(list[1]!.severity, 'warn');
});

test('the active machine not reachable over TLS from the proxy: a failure; a standby that does not answer is as it should be', () => {
  const c = withTls({});
  const f = facts(c);
  f.machines.find((m) => m.name === 'observer')!.backendTls!.servers[0]!.chain = failed('no TLS handshake with 10.0.0.11:443: connect:errno=111');
  const [x, ...rest] = findings(c, f);
  assert.equal(rest.length, 0);
  assert.match(x!.what, /observer cannot make a TLS connection to nginx on app1, the active machine/);
});

test('verify: false: a warning on every proxy; a foreign certificate is a warning, not a failure', () => {
  const c = withTls({ verify: false });
  const list = findings(c, facts(c, { app2: foreign.certPem }));
  assert.deepEqual(
    list.map((x) => [x.severity, x.machine]),
    [
      ['warn', 'observer'],
      ['warn', 'app2'],
    ],
  );
  assert.match(list[0]!.what, /verify none/);
});

test('chainsTo: only to a CA of the CA file; a CA certificate the server sends is no anchor', async () => {
  const root = await createClusterCa({ clusterName: 'root' });
  const leaf = new X509Certificate(nginx.get('app1')!.certPem);
  assert.equal(chainsTo(leaf, [], [new X509Certificate(pki.ca.certPem)]), true);
  assert.equal(chainsTo(leaf, [new X509Certificate(pki.ca.certPem)], [new X509Certificate(root.certPem)]), false);
});
