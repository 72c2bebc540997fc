import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { before, describe, it } from 'node:test';
import { Gauge, Registry } from 'prom-client';
import { clusterFixture } from '../testing/clusters.ts';
import { mtlsFetch, TlsError } from '../mtls/mtls.ts';
import { createClusterCa, issueCertificate, type CertKeyPair, type ClusterCa } from '../pki/ca.ts';
import { metricsUrl } from '../layout/network.ts';
import { certificateExpiry, daemonRegistry } from './registry.ts';
import { serveMetrics } from './serve.ts';

const HOST = '127.0.0.1';
const machine = { name: 'app1', address: HOST };
const pkiOf = (ca: ClusterCa, id: CertKeyPair) => ({ ca: ca.certPem, cert: id.certPem, key: id.keyPem });

function registry(): Registry {
  const r = new Registry();
  new Gauge({ name: 'vigil_test_value', help: 'a test value', registers: [r] }).set(42);
  return r;
}

describe('the /metrics listener', () => {
  let ca: ClusterCa;
  let server: CertKeyPair;
  let client: CertKeyPair;
  before(async () => {
    ca = await createClusterCa({ clusterName: 'prod' });
    [server, client] = await Promise.all([
      issueCertificate(ca, { commonName: 'app1', ipAddresses: [HOST], usage: 'both' }),
      issueCertificate(ca, { commonName: 'prometheus', ipAddresses: [], usage: 'client' }),
    ]);
  });

  it('auth none: GET /metrics in the text format; any other path 404, another method 405', async () => {
    const cluster = clusterFixture('pair');
    cluster.metrics = { ...cluster.metrics, listen: 'loopback', auth: 'none' };
    const logs: string[] = [];
    const s = await serveMetrics({ cluster, machine, port: 0, registry: registry(), pki: pkiOf(ca, server), log: (e) => logs.push(e) });
    assert.ok(s);
    try {
      const r = await fetch(`http://${HOST}:${s.port}/metrics`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      assert.match(await r.text(), /^vigil_test_value 42$/m);
      assert.equal((await fetch(`http://${HOST}:${s.port}/`)).status, 404);
      assert.equal((await fetch(`http://${HOST}:${s.port}/metrics`, { method: 'POST' })).status, 405);
      assert.deepEqual(logs, ['metrics-listening']);
    } finally {
      await s.close();
    }
  });

  it('auth mtls: a client certificate of the cluster CA gets the metrics; a client without one is refused in the handshake', async () => {
    const cluster = clusterFixture('pair');
    cluster.metrics = { ...cluster.metrics, listen: 'loopback', auth: 'mtls' };
    const s = await serveMetrics({ cluster, machine, port: 0, registry: registry(), pki: pkiOf(ca, server), log: () => {} });
    assert.ok(s);
    try {
      const ok = await mtlsFetch(`https://${HOST}:${s.port}/metrics`, { ...pkiOf(ca, client), timeoutMs: 5000 });
      assert.equal(ok.status, 200);
      assert.match(ok.text, /^vigil_test_value 42$/m);
      await assert.rejects(fetch(`https://${HOST}:${s.port}/metrics`), 'no client certificate (and the cluster CA is not trusted by fetch)');
      const other = await createClusterCa({ clusterName: 'other' });
      const stranger = await issueCertificate(other, { commonName: 'prometheus', ipAddresses: [], usage: 'client' });
      await assert.rejects(
        mtlsFetch(`https://${HOST}:${s.port}/metrics`, { ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem, timeoutMs: 5000 }),
        TlsError,
      );
    } finally {
      await s.close();
    }
  });

  it('a port already taken is logged with the fix and no listener: the daemon runs on; metrics off starts none', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, HOST, r));
    const port = (taken.address() as { port: number }).port;
    try {
      const cluster = clusterFixture('pair');
      cluster.metrics = { ...cluster.metrics, listen: 'loopback', agentPort: port };
      const logs: { event: string; fields?: Record<string, unknown> }[] = [];
      const s = await serveMetrics({
        cluster,
        machine,
        port,
        registry: registry(),
        pki: pkiOf(ca, server),
        log: (event, fields) => logs.push({ event, fields }),
      });
      assert.equal(s, null);
      assert.equal(logs[0]?.event, 'metrics-not-served');
      assert.match(String(logs[0]?.fields?.fix), new RegExp(`free port ${port} on app1 or change metrics.agentPort`));
      cluster.metrics = { ...cluster.metrics, enabled: false };
      assert.equal(await serveMetrics({ cluster, machine, port: 0, registry: registry(), pki: pkiOf(ca, server), log: () => {} }), null);
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it("metricsUrl follows listen and auth; the certificate gauge gives each certificate's expiry", async () => {
    const cluster = clusterFixture('pair');
    const app1 = cluster.machines.find((m) => m.name === 'app1')!;
    assert.equal(metricsUrl(cluster, app1, 'agent'), `http://${app1.address}:9710/metrics`);
    cluster.metrics = { ...cluster.metrics, listen: 'any', auth: 'mtls' };
    assert.equal(metricsUrl(cluster, app1, 'observer'), `https://${app1.address}:9711/metrics`);
    cluster.metrics = { ...cluster.metrics, listen: '192.168.9.9' };
    assert.equal(metricsUrl(cluster, app1, 'agent'), 'https://192.168.9.9:9710/metrics');

    const m = daemonRegistry('agent', '1.2.3');
    certificateExpiry(m, [
      { certificate: 'ca', pem: () => ca.certPem },
      { certificate: 'machine', pem: () => server.certPem },
      { certificate: 'proxy', pem: () => null },
    ]);
    const text = await m.registry.metrics();
    const expiry = (c: string) => Number(new RegExp(`^vigil_certificate_expiry_timestamp_seconds\\{certificate="${c}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(expiry('machine'), Date.parse(new (await import('node:crypto')).X509Certificate(server.certPem).validTo) / 1000);
    assert.ok(expiry('ca') > Date.now() / 1000);
    assert.doesNotMatch(text, /certificate="proxy"/, 'a missing file is left out');
    assert.match(text, /^vigil_build_info\{version="1\.2\.3",component="agent",node_version="[\d.]+"\} 1$/m);
  });
});
