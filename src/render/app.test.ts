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
import { renderRefapp } from './refapp.ts';

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
    for (const s of Object.values(secrets)) assert.ok(!f.content.includes(s));
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
    });
    assert.deepEqual(Object.values(REFAPP_KEYS).sort(), Object.keys(p).sort());
  });

  it('round-trips awkward values through the properties format', () => {
    const awkward = { a: ' leading space', 'b key': 'x=y:z', c: '#not a comment', d: 'back\\slash\nnewline', e: 'ünï €mojis 😀', f: '' };
    assert.deepEqual(valuesOf(formatProperties(awkward)), awkward);
  });

  it('reads continuation lines and : separators as java.util.Properties does', () => {
    assert.deepEqual(valuesOf('# c\n! c\nk1 : v1\nk2   v2\nk3=one \\\n    two\n'), { k1: 'v1', k2: 'v2', k3: 'one two' });
  });
});
