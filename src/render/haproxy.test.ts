import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Cluster } from '../config/schema.ts';
import { EMPTY_SERVER_STATE, appCheck, haproxyConfig, renderHaproxy } from './haproxy.ts';
import { clusterFixture, relocate, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';
import { createClusterCa, issueCertificate, pemBundle, writePki } from '../pki/ca.ts';
import { createSelfSignedBundle } from './tls.ts';

/** The lines of one section (`backend app`, `listen postgres`, ...), trimmed. */
function sectionOf(cfg: string, title: string): string[] {
  const block = cfg.split('\n\n').find((b) => b.startsWith(`${title}\n`));
  assert.ok(block, `section ${title} missing`);
  return block
    .split('\n')
    .slice(1)
    .map((l) => l.trim());
}

describe('haproxy.cfg', () => {
  for (const topology of ['pair', 'distributed'] as const) {
    it(`${topology}: every app machine in backend app, every db machine in listen postgres`, () => {
      const c = clusterFixture(topology);
      const cfg = haproxyConfig(c);
      const app = sectionOf(cfg, 'backend app');
      const pg = sectionOf(cfg, 'listen postgres');
      for (const m of c.machines) {
        const appLine = `server ${m.name} ${m.address}:80 check port 7710 check-ssl verify required ca-file /etc/vigil/pki/ca.pem crt /etc/vigil/pki/haproxy-check.pem disabled`;
        const pgLine = `server ${m.name} ${m.address}:5432 maxconn 150 check port 8008 check-ssl verify required ca-file /etc/vigil/pki/ca.pem check-sni ${m.name} verifyhost ${m.name}`;
        assert.equal(app.includes(appLine), m.roles.includes('app'), `${m.name} in app`);
        assert.equal(pg.includes(pgLine), m.roles.includes('db'), `${m.name} in postgres`);
      }
    });
  }

  it('with application.backendTls: TLS to the app machines, verified against the CA file for the machine name; verify none only when written', () => {
    const verified = sectionOf(haproxyConfig(clusterFixture('pair', { application: { backendTls: {} } })), 'backend app');
    assert.ok(
      verified.includes(
        'server app1 10.0.0.11:443 ssl verify required ca-file /etc/vigil/pki/ca.pem verifyhost app1 crt /etc/vigil/pki/haproxy-check.pem check port 7710 check-ssl disabled',
      ),
      verified.join('\n'),
    );
    const own = sectionOf(
      haproxyConfig(
        clusterFixture('pair', { application: { backendTls: { port: 8443, ca: 'ca.pem', certificate: '/etc/ssl/a.pem', key: '/etc/ssl/a.key' } } }),
      ),
      'backend app',
    );
    assert.ok(own.some((l) => l.startsWith('server app2 10.0.0.12:8443 ssl verify required ca-file /etc/vigil/tls/backend-ca.pem verifyhost app2 ')));
    const none = sectionOf(haproxyConfig(clusterFixture('pair', { application: { backendTls: { verify: false } } })), 'backend app');
    assert.ok(
      none.includes('server app1 10.0.0.11:443 ssl verify none crt /etc/vigil/pki/haproxy-check.pem check port 7710 check-ssl disabled'),
      none.join('\n'),
    );
  });

  it("sends app traffic to one server only, checked at the agent's role endpoint", () => {
    const c = clusterFixture('distributed', { application: { healthPath: '/api/health' } });
    const app = sectionOf(haproxyConfig(c), 'backend app');
    assert.ok(app.includes('balance first'));
    assert.ok(!app.some((l) => l.startsWith('balance roundrobin')));
    assert.ok(app.includes('option httpchk'));
    assert.ok(app.includes('http-check send meth GET uri /role ver HTTP/1.1 hdr Host vigil-check'));
    assert.ok(app.includes('http-check expect status 200'));
    assert.deepEqual(appCheck(c), { method: 'GET', path: '/role', port: 7710, caFile: '/etc/vigil/pki/ca.pem', crtFile: '/etc/vigil/pki/haproxy-check.pem' });
  });

  it('routes :5000 to the Patroni primary with the cluster timers', () => {
    const c = clusterFixture('distributed', { timers: { proxyCheckIntervalMs: 500, proxyFallCount: 3, proxyRiseCount: 2 } });
    const pg = sectionOf(haproxyConfig(c), 'listen postgres');
    assert.ok(pg.includes('bind *:5000'));
    assert.ok(pg.includes('mode tcp'));
    assert.ok(pg.includes('http-check send meth GET uri /primary ver HTTP/1.1 hdr Host vigil-check'));
    assert.ok(
      pg.includes('http-check expect rstring \\"role\\":\\ ?\\"(primary|master)\\"'),
      'the role in the body, not only the status: no write into the read-only window after a promotion',
    );
    assert.ok(pg.includes('http-check expect status 200'));
    assert.ok(pg.includes('default-server inter 500ms fastinter 125ms downinter 125ms fall 3 rise 2 on-marked-down shutdown-sessions'));
  });

  it("has the admin socket, the stats page with HAProxy's Prometheus exporter on /metrics, and no daemon flag", () => {
    const cfg = haproxyConfig(clusterFixture('pair', { proxy: { statsPort: 7100 } }));
    const global = sectionOf(cfg, 'global');
    assert.ok(global.includes('stats socket /run/vigil/haproxy.sock mode 600 level admin expose-fd listeners'));
    assert.ok(!global.includes('daemon'));
    assert.ok(sectionOf(cfg, 'listen stats').includes('bind *:7100'));
    assert.ok(sectionOf(cfg, 'listen stats').includes('http-request use-service prometheus-exporter if { path /metrics }'));
  });

  it('serves :443 only with a bundle', () => {
    assert.ok(!haproxyConfig(clusterFixture('pair')).includes('https_front'));
    const cfg = haproxyConfig(clusterFixture('pair', { proxy: { tlsBundle: '/etc/vigil/tls/proxy.pem', httpsPort: 8443 } }));
    assert.ok(sectionOf(cfg, 'frontend https_front').includes('bind *:8443 ssl crt /etc/vigil/tls/proxy.pem'));
  });

  it('holds no secret', () => {
    const c = clusterFixture('distributed', { proxy: { tlsBundle: '/etc/vigil/tls/proxy.pem' } });
    const f = renderHaproxy(c, c.machines[0]!);
    for (const s of Object.values(secretsFixture()).filter((v) => typeof v === 'string')) assert.ok(!f.content.includes(s));
    assert.equal(f.mode, 0o644);
  });
});

describe('haproxy -c (HAProxy 2.6)', () => {
  /** The files the agent check needs (CA and HAProxy's client bundle), under the relocated roots. */
  async function checkPki(dir: string): Promise<void> {
    const ca = await createClusterCa({ clusterName: 'test' });
    const own = await issueCertificate(ca, { commonName: 'observer', ipAddresses: ['10.0.0.10'], usage: 'both' });
    await writePki(join(dir, 'etc/vigil/pki'), { 'ca.pem': ca.certPem, 'haproxy-check.pem': pemBundle(own.certPem, own.keyPem) });
  }

  async function check(c: Cluster, dir: string): Promise<void> {
    const file = join(dir, 'haproxy.cfg');
    await checkPki(dir);
    await writeFile(file, relocate(haproxyConfig(c), dir));
    await mkdir(join(dir, 'run/vigil'), { recursive: true });
    await writeFile(join(dir, 'run/vigil/haproxy.state'), EMPTY_SERVER_STATE); // as the unit's ExecStartPre writes it
    const r = await runTool('haproxy', ['-c', '-f', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Warnings mean HAProxy guessed at something; the generated file must need no guessing.
    assert.doesNotMatch(r.stdout + r.stderr, /WARNING|ALERT/);
  }

  it('accepts the plain HTTP config of both topologies', async () => {
    const dir = await tempDir('vigil-haproxy-');
    try {
      await check(clusterFixture('pair'), dir);
      await check(clusterFixture('distributed'), dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('accepts the config with TLS to the app machines', async () => {
    const dir = await tempDir('vigil-haproxy-');
    try {
      await check(clusterFixture('pair', { application: { backendTls: {} } }), dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('accepts the config with a TLS bundle', { timeout: 60_000 }, async () => {
    const dir = await tempDir('vigil-haproxy-');
    try {
      const bundle = join(dir, 'tls', 'proxy.pem');
      await createSelfSignedBundle(bundle, 'vigil.test', ['10.0.0.10', '127.0.0.1']);
      await check(clusterFixture('distributed', { proxy: { tlsBundle: bundle } }), dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
