import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import type { Cluster } from '../config/schema.ts';
import { etcdctlTlsFlags, minLeaseTtlSeconds, renderEtcd } from './etcd.ts';
import { etcdEndpoints } from '../layout/network.ts';
import { mtlsFetch } from '../mtls/mtls.ts';
import { createClusterCa, issueCertificate, writePki } from '../pki/ca.ts';
import { request } from 'node:https';

/** The status of a gateway put over https with this identity; 0 when the TLS handshake or the connection failed. */
function httpsStatus(url: string, id: { ca: string; cert?: string; key?: string }): Promise<number> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ key: Buffer.from('/vigil/vigil/probe').toString('base64'), value: Buffer.from('theirs').toString('base64') });
    const req = request(url, { method: 'POST', ...id, timeout: 3000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}
import { clusterFixture, freePort, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';

/** A scale-out cluster: three etcd members. */
function threeMembers(): Cluster {
  const c = clusterFixture('distributed');
  const extra = [
    { name: 'etcd2', address: '10.0.0.31' },
    { name: 'etcd3', address: '10.0.0.32' },
  ].map((m) => ({ ...m, roles: ['etcd' as const], sshUser: 'root', sshPort: 22 }));
  return { ...c, topology: 'custom', machines: [...c.machines, ...extra] };
}

describe('etcd config', () => {
  it('lists every member in initial-cluster and listens on the address and loopback', () => {
    const c = threeMembers();
    const observer = c.machines.find((m) => m.name === 'observer')!;
    const doc = parse(renderEtcd(c, observer).content) as Record<string, unknown>;
    assert.equal(doc['initial-cluster'], 'observer=https://10.0.0.10:2380,etcd2=https://10.0.0.31:2380,etcd3=https://10.0.0.32:2380');
    assert.equal(doc['listen-client-urls'], 'https://10.0.0.10:2379,https://127.0.0.1:2379');
    assert.equal(doc['advertise-client-urls'], 'https://10.0.0.10:2379');
    assert.equal(doc['listen-peer-urls'], 'https://10.0.0.10:2380');
    assert.equal(doc['initial-advertise-peer-urls'], 'https://10.0.0.10:2380');
    assert.equal(doc['initial-cluster-token'], 'vigil-vigil');
    assert.equal(doc['initial-cluster-state'], 'new');
    assert.equal(doc['enable-v2'], false);
    assert.equal(doc['heartbeat-interval'], 100);
    assert.equal(doc['election-timeout'], 1000);
    assert.deepEqual(etcdEndpoints(c), ['https://10.0.0.10:2379', 'https://10.0.0.31:2379', 'https://10.0.0.32:2379']);
  });

  it('asks every client and peer for a certificate from the cluster CA, with the member certificate apply issues', () => {
    const c = threeMembers();
    const doc = parse(
      renderEtcd(
        c,
        c.machines.find((m) => m.name === 'etcd2')!,
      ).content,
    ) as Record<string, unknown>;
    const want = {
      'cert-file': '/etc/vigil/tls/etcd.pem',
      'key-file': '/etc/vigil/tls/etcd.key',
      'client-cert-auth': true,
      'trusted-ca-file': '/etc/vigil/pki/ca.pem',
    };
    assert.deepEqual(doc['client-transport-security'], want);
    assert.deepEqual(doc['peer-transport-security'], want);
    // Patroni needs the JSON gateway; it is on the same TLS port, behind the same check.
    assert.equal(doc['enable-grpc-gateway'], true);
    // No http:// anywhere: no port of etcd's speaks plain text.
    assert.doesNotMatch(renderEtcd(c, c.machines[0]!).content, /http:\/\//);
    assert.deepEqual(etcdctlTlsFlags('etcd2'), ['--cacert=/etc/vigil/pki/ca.pem', '--cert=/etc/vigil/pki/etcd2.pem', '--key=/etc/vigil/pki/etcd2.key']);
  });

  it('holds no secret and is world-readable', () => {
    const c = clusterFixture('pair');
    const f = renderEtcd(c, c.machines[0]!);
    for (const s of Object.values(secretsFixture()).filter((v) => typeof v === 'string')) assert.ok(!f.content.includes(s));
    assert.equal(f.mode, 0o644);
  });

  it('knows the shortest lease etcd grants with its timers', () => {
    assert.equal(minLeaseTtlSeconds(1000), 2);
    assert.equal(minLeaseTtlSeconds(5000), 8);
  });

  it('starts a real etcd 3.4 that reports healthy, and refuses every client without a certificate from the CA', { timeout: 90_000 }, async () => {
    const dir = await tempDir('vigil-etcd-');
    const clientPort = await freePort();
    const peerPort = await freePort();
    const c = clusterFixture('pair', { addresses: { observer: '127.0.0.1' } });
    const observer = c.machines.find((m) => m.name === 'observer')!;
    const [ca, otherCa] = await Promise.all([createClusterCa({ clusterName: 'vigil' }), createClusterCa({ clusterName: 'vigil' })]);
    const member = await issueCertificate(ca, { commonName: 'observer', ipAddresses: ['127.0.0.1'], usage: 'both' });
    const admin = await issueCertificate(ca, { commonName: 'admin', ipAddresses: [], usage: 'client' });
    const stranger = await issueCertificate(otherCa, { commonName: 'admin', ipAddresses: [], usage: 'client' });
    await writePki(dir, {
      'ca.pem': ca.certPem,
      'etcd.pem': member.certPem,
      'etcd.key': member.keyPem,
      'admin.pem': admin.certPem,
      'admin.key': admin.keyPem,
      'other-ca.pem': otherCa.certPem,
      'stranger.pem': stranger.certPem,
      'stranger.key': stranger.keyPem,
    });
    const f = (n: string) => join(dir, n);
    const tls = { certFile: f('etcd.pem'), keyFile: f('etcd.key'), caFile: f('ca.pem') };
    const config = join(dir, 'etcd.yml');
    await writeFile(config, renderEtcd(c, observer, { clientPort, peerPort, dataDir: join(dir, 'data'), tls }).content);
    const child = spawn('etcd', ['--config-file', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-200_000)));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const endpoint = `https://127.0.0.1:${clientPort}`;
    const etcdctl = (id: string[], ...args: string[]) =>
      runTool('etcdctl', ['--endpoints', endpoint, '--dial-timeout', '2s', '--command-timeout', '3s', ...id, ...args], {
        env: { ...process.env, ETCDCTL_API: '3' },
      });
    const asAdmin = [`--cacert=${f('ca.pem')}`, `--cert=${f('admin.pem')}`, `--key=${f('admin.key')}`];
    try {
      const deadline = Date.now() + 20_000;
      let last = '';
      for (;;) {
        const r = await etcdctl(asAdmin, 'endpoint', 'health');
        last = r.stdout + r.stderr;
        if (r.code === 0 && /is healthy/.test(last)) break;
        if (child.exitCode !== null) assert.fail(`etcd exited with ${child.exitCode}:\n${log}`);
        if (Date.now() > deadline) assert.fail(`etcd not healthy after 20 s: ${last}\n${log}`);
        await sleep(200);
      }
      assert.equal((await etcdctl(asAdmin, 'put', '/vigil/vigil/probe', 'ours')).code, 0, 'the admin writes');
      // Refused: no client certificate, a certificate from another CA, plain http (gRPC and gateway).
      const noCert = await etcdctl([`--cacert=${f('ca.pem')}`], 'put', '/vigil/vigil/probe', 'theirs');
      assert.notEqual(noCert.code, 0, noCert.stdout);
      const foreign = await etcdctl(
        [`--cacert=${f('ca.pem')}`, `--cert=${f('stranger.pem')}`, `--key=${f('stranger.key')}`],
        'put',
        '/vigil/vigil/probe',
        'theirs',
      );
      assert.notEqual(foreign.code, 0, foreign.stdout);
      const plain = await fetch(`http://127.0.0.1:${clientPort}/v3/kv/put`, {
        method: 'POST',
        body: JSON.stringify({ key: Buffer.from('/vigil/vigil/probe').toString('base64'), value: Buffer.from('theirs').toString('base64') }),
        signal: AbortSignal.timeout(3000),
      }).then(
        (r) => r.status,
        () => 0,
      );
      assert.notEqual(plain, 200, 'plain http to the gateway');
      const gatewayNoCert = await httpsStatus(`${endpoint}/v3/kv/put`, { ca: ca.certPem });
      assert.equal(gatewayNoCert, 0, 'https without a client certificate: refused at the handshake');
      const gatewayForeign = await httpsStatus(`${endpoint}/v3/kv/put`, { ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem });
      assert.equal(gatewayForeign, 0, 'https with a certificate from another CA: refused at the handshake');
      const got = await etcdctl(asAdmin, 'get', '/vigil/vigil/probe', '--print-value-only');
      assert.equal(got.stdout.trim(), 'ours', 'nothing changed');
      // The same request with the CA's certificate goes through: the refusals above were the certificate's.
      assert.equal(await httpsStatus(`${endpoint}/v3/kv/put`, { ca: ca.certPem, cert: admin.certPem, key: admin.keyPem }), 200);
      assert.equal((await etcdctl(asAdmin, 'get', '/vigil/vigil/probe', '--print-value-only')).stdout.trim(), 'theirs');
      // The v2 API is off: only v3 is served.
      const v2 = await mtlsFetch(`${endpoint}/v2/keys`, { ca: ca.certPem, cert: admin.certPem, key: admin.keyPem, timeoutMs: 3000 });
      assert.equal(v2.status, 404);
      // Config keys etcd did not know would have been fatal; check the ones that shape failover took effect.
      assert.match(log, /"heartbeat-interval":"100ms"/);
      assert.match(log, /"election-timeout":"1s"/);
      assert.match(log, /"auto-compaction-mode":"periodic"/);
    } finally {
      const running = () => child.exitCode === null && child.signalCode === null;
      if (running() && child.pid !== undefined) {
        process.kill(child.pid, 'SIGTERM'); // its own PID, never by name
        const timer = new AbortController();
        await Promise.race([exited, sleep(10_000, undefined, { signal: timer.signal }).catch(() => undefined)]);
        timer.abort();
        if (running()) process.kill(child.pid, 'SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    }
  });
});
