/** The app machines' files: nginx.conf (checked with the real nginx) and the reference app's properties. */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REFAPP_PORT } from '../layout/network.ts';
import { clusterFixture, relocate, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';
import { NGINX_DIRS, nginxConfig, renderNginx } from './nginx.ts';
import { REFAPP_KEYS } from '../layout/refapp.ts';
import { formatProperties, parseProperties } from '../util/properties.ts';
import { renderRefapp, renderRefappSettings } from './refapp.ts';
import { PATHS } from '../layout/paths.ts';
import { createClusterCa, issueCertificate } from '../pki/ca.ts';

const valuesOf = (text: string) => Object.fromEntries([...parseProperties(text, 'f')].map(([k, e]) => [k, e.value]));

const secrets = secretsFixture();

describe('nginx.conf', () => {
  it('listens on the app port and proxies to the reference app on loopback', () => {
    const cfg = nginxConfig(clusterFixture('distributed', { application: { port: 8081 } }));
    assert.match(cfg, /^\s+listen 8081;$/m);
    assert.match(cfg, new RegExp(`server 127\\.0\\.0\\.1:${REFAPP_PORT};`));
    assert.match(cfg, /client_max_body_size 100m;/);
    assert.match(cfg, /pid \/run\/vigil\/nginx\/nginx\.pid;/);
    assert.doesNotMatch(cfg, /^\s*[^#\s].*\/var\/lib\/nginx/m);
    assert.doesNotMatch(cfg, /^\s*daemon/m);
  });

  it('holds no secret', () => {
    const c = clusterFixture('pair');
    const f = renderNginx(c, c.machines[1]!);
    for (const s of Object.values(secrets).filter((v) => typeof v === 'string')) assert.ok(!f.content.includes(s));
  });

  it('passes nginx -t', { timeout: 30_000 }, async () => {
    const dir = await tempDir('vigil-nginx-');
    try {
      for (const d of Object.values(NGINX_DIRS)) await mkdir(join(dir, d), { recursive: true });
      const file = join(dir, 'nginx.conf');
      await writeFile(file, relocate(nginxConfig(clusterFixture('distributed')), dir));
      const errLog = join(dir, NGINX_DIRS.log, 'startup.log');
      const r = await runTool('nginx', ['-t', '-c', file, '-e', errLog, '-g', 'daemon off;']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stderr, /test is successful/);
      assert.doesNotMatch(r.stderr, /\[(warn|emerg|alert)\]/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('nginx.conf with application.backendTls', () => {
  it('serves only HTTPS on the backend port with the certificate apply issues, or yours', () => {
    const cfg = nginxConfig(clusterFixture('distributed', { application: { backendTls: { port: 8443 } } }));
    assert.match(cfg, /listen 8443 ssl;/);
    assert.match(cfg, /ssl_certificate \/etc\/vigil\/tls\/nginx\.pem;/);
    assert.match(cfg, /ssl_certificate_key \/etc\/vigil\/tls\/nginx\.key;/);
    assert.doesNotMatch(cfg, /listen 80;/, 'nothing in clear');
    const own = nginxConfig(
      clusterFixture('distributed', { application: { backendTls: { ca: 'ca.pem', certificate: '/etc/ssl/app.pem', key: '/etc/ssl/app.key' } } }),
    );
    assert.match(own, /listen 443 ssl;\n\s+ssl_certificate \/etc\/ssl\/app\.pem;\n\s+ssl_certificate_key \/etc\/ssl\/app\.key;/);
  });

  it('passes nginx -t with a certificate of the cluster CA', { timeout: 30_000 }, async () => {
    const dir = await tempDir('vigil-nginx-');
    try {
      for (const d of Object.values(NGINX_DIRS)) await mkdir(join(dir, d), { recursive: true });
      const ca = await createClusterCa({ clusterName: 'test' });
      const issued = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['10.0.0.11'], dnsNames: ['app1'], usage: 'server' });
      await mkdir(join(dir, 'etc/vigil/tls'), { recursive: true });
      await writeFile(join(dir, PATHS.nginxTlsCert), issued.certPem);
      await writeFile(join(dir, PATHS.nginxTlsKey), issued.keyPem, { mode: 0o600 });
      const file = join(dir, 'nginx.conf');
      await writeFile(file, relocate(nginxConfig(clusterFixture('distributed', { application: { backendTls: { port: 18443 } } })), dir));
      const r = await runTool('nginx', ['-t', '-c', file, '-e', join(dir, NGINX_DIRS.log, 'startup.log'), '-g', 'daemon off;']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stderr, /\[(warn|emerg|alert)\]/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('reference app properties', () => {
  it('points the app at the proxy :5000 and holds the password, mode 600', () => {
    const c = clusterFixture('distributed', { proxy: { postgresPort: 5001 } });
    const f = renderRefapp(
      c,
      secrets,
      c.machines.find((m) => m.name === 'app2')!,
    );
    assert.equal(f.mode, 0o600);
    assert.equal(f.path, '/etc/vigil/refapp/application.properties');
    const p = valuesOf(f.content);
    assert.deepEqual(p, {
      'vigil.node': 'app2',
      'db.host': '10.0.0.10',
      'db.port': '5001',
      'db.name': 'servicedesk',
      'db.user': 'servicedesk',
      'spring.datasource.password': secrets.appDbPassword,
      'http.host': '127.0.0.1',
      'http.port': String(REFAPP_PORT),
      'attachments.dir': '/var/lib/vigil/app/attachments',
      'startup.seconds': '60',
      'control.port': '8081',
      'analytics.port': '8082',
    });
    assert.deepEqual(
      Object.values(REFAPP_KEYS)
        .filter((k) => k !== REFAPP_KEYS.httpsSettings)
        .sort(),
      Object.keys(p).sort(),
    );
  });

  it('with an HTTPS endpoint on its settings file: names the file, which names the certificate and key apply issues', () => {
    const e = { service: 'app', port: 8443, settingsFile: PATHS.refappSettings };
    const c = clusterFixture('distributed', { application: { tlsEndpoints: [e] } });
    const app2 = c.machines.find((m) => m.name === 'app2')!;
    assert.equal(valuesOf(renderRefapp(c, secrets, app2).content)['https.settings'], '/etc/vigil/refapp/appsettings.json');
    const s = renderRefappSettings(c, app2)!;
    assert.equal(s.mode, 0o644);
    const [comment, ...json] = s.content.split('\n');
    assert.match(comment!, /^\/\/ Generated by/);
    assert.deepEqual(JSON.parse(json.join('\n')), {
      Https: { Port: 8443, CertificateFilePath: '/etc/vigil/refapp/tls/refapp.pem', KeyFilePath: '/etc/vigil/refapp/tls/refapp.key' },
    });
    assert.equal(renderRefappSettings(clusterFixture('distributed'), app2), undefined);
  });

  it('round-trips awkward values through the properties format', () => {
    const awkward = { a: ' leading space', 'b key': 'x=y:z', c: '#not a comment', d: 'back\\slash\nnewline', e: 'ünï €mojis 😀', f: '' };
    assert.deepEqual(valuesOf(formatProperties(awkward)), awkward);
  });

  it('reads continuation lines and : separators as java.util.Properties does', () => {
    assert.deepEqual(valuesOf('# c\n! c\nk1 : v1\nk2   v2\nk3=one \\\n    two\n'), { k1: 'v1', k2: 'v2', k3: 'one two' });
  });
});
