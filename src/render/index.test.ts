import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { VigilError } from '../util/errors.ts';
import { clusterFixture, secretsFixture, tempDir } from '../testing/clusters.ts';
import { renderAll, renderMachine, renderProblems } from './index.ts';
import { RENDER_MARKER, writeRendered } from './write.ts';

const secrets = secretsFixture();

describe('renderAll', () => {
  it('distributed: the files each machine needs', () => {
    const byMachine = new Map<string, string[]>();
    for (const f of renderAll(clusterFixture('distributed'), secrets)) byMachine.set(f.machine, [...(byMachine.get(f.machine) ?? []), f.path]);
    assert.deepEqual(Object.fromEntries(byMachine), {
      observer: [
        '/etc/vigil/etcd.yml',
        '/etc/vigil/haproxy.cfg',
        '/etc/systemd/system/vigil-etcd.service',
        '/etc/systemd/system/vigil-haproxy.service',
        '/etc/systemd/system/vigil-observer.service',
      ],
      app1: [
        '/etc/vigil/nginx.conf',
        '/etc/vigil/refapp/application.properties',
        '/etc/systemd/system/vigil-nginx.service',
        '/etc/systemd/system/vigil-refapp.service',
        '/etc/systemd/system/vigil-agent.service',
        '/etc/systemd/system/vigil-deadman.service',
        '/etc/vigil/deadman.sh',
      ],
      app2: [
        '/etc/vigil/nginx.conf',
        '/etc/vigil/refapp/application.properties',
        '/etc/systemd/system/vigil-nginx.service',
        '/etc/systemd/system/vigil-refapp.service',
        '/etc/systemd/system/vigil-agent.service',
        '/etc/systemd/system/vigil-deadman.service',
        '/etc/vigil/deadman.sh',
      ],
      db1: ['/etc/vigil/patroni.yml', '/etc/systemd/system/vigil-patroni.service', '/etc/systemd/system/vigil-agent.service'],
      db2: ['/etc/vigil/patroni.yml', '/etc/systemd/system/vigil-patroni.service', '/etc/systemd/system/vigil-agent.service'],
    });
  });

  it('pair: app machines also run Patroni', () => {
    const paths = renderMachine(clusterFixture('pair'), secrets, 'app1').map((f) => f.path);
    assert.ok(paths.includes('/etc/vigil/patroni.yml'));
    assert.ok(paths.includes('/etc/vigil/nginx.conf'));
  });

  it('puts secrets only in files of mode 600', () => {
    for (const topology of ['pair', 'distributed'] as const) {
      for (const f of renderAll(clusterFixture(topology, { proxy: { tlsBundle: '/etc/vigil/tls/proxy.pem' } }), secrets)) {
        const leaks = Object.entries(secrets).filter(([, v]) => typeof v === 'string' && f.content.includes(v));
        if (leaks.length > 0) assert.equal(f.mode, 0o600, `${f.machine}:${f.path} holds ${leaks.map(([k]) => k).join(', ')}`);
      }
    }
  });

  it('refuses an unknown machine, listing the known ones', () => {
    assert.throws(
      () => renderMachine(clusterFixture('pair'), secrets, 'db9'),
      (e: unknown) => e instanceof VigilError && /use one of: observer, app1, app2/.test(e.message),
    );
  });

  it('refuses a cluster without etcd or proxy', () => {
    const c = clusterFixture('distributed');
    const broken = { ...c, machines: c.machines.map((m) => (m.name === 'observer' ? { ...m, roles: ['observer' as const] } : m)) };
    const messages = renderProblems(broken).map((p) => p.message);
    assert.equal(messages.length, 2);
    assert.throws(
      () => renderAll(broken, secrets),
      (e: unknown) => e instanceof VigilError && e.code === 'CONFIG_INVALID',
    );
  });
});

describe('writeRendered', () => {
  it('writes OUT/<machine>/<path> with each mode, and replaces a previous render whole', async () => {
    const dir = await tempDir('vigil-out-');
    try {
      const out = join(dir, 'rendered');
      const files = renderAll(clusterFixture('distributed'), secrets);
      const written = await writeRendered(files, out);
      assert.equal(written.length, files.length);
      const patroni = join(out, 'db1', 'etc', 'vigil', 'patroni.yml');
      assert.equal((await stat(patroni)).mode & 0o777, 0o600);
      assert.equal((await stat(join(out, 'observer', 'etc', 'vigil', 'haproxy.cfg'))).mode & 0o777, 0o644);
      assert.equal(await readFile(patroni, 'utf8'), files.find((f) => f.machine === 'db1' && f.path.endsWith('patroni.yml'))!.content);
      // The output holds passwords: the directory itself is private.
      assert.equal((await stat(out)).mode & 0o077, 0);

      // A second render (pair) replaces the first: no file of the old topology is left.
      await writeRendered(renderAll(clusterFixture('pair'), secrets), out);
      assert.deepEqual((await readdir(out)).sort(), [RENDER_MARKER, 'app1', 'app2', 'observer']);
      // No temp directories are left next to it.
      assert.deepEqual(await readdir(dir), ['rendered']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to replace a directory it did not write, and leaves it alone', async () => {
    const dir = await tempDir('vigil-out-');
    try {
      const out = join(dir, 'precious');
      await mkdir(out);
      await writeFile(join(out, 'keep.txt'), 'mine');
      await assert.rejects(
        writeRendered(renderAll(clusterFixture('pair'), secrets), out),
        (e: unknown) => e instanceof VigilError && e.code === 'USAGE' && /not empty/.test(e.message),
      );
      assert.deepEqual(await readdir(out), ['keep.txt']);
      assert.deepEqual(await readdir(dir), ['precious']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves the previous render in place when writing fails', async () => {
    const dir = await tempDir('vigil-out-');
    try {
      const out = join(dir, 'rendered');
      const files = renderAll(clusterFixture('pair'), secrets);
      await writeRendered(files, out);
      const bad = [...files, { ...files[0]! }]; // the same file twice: refused mid-way
      await assert.rejects(writeRendered(bad, out), (e: unknown) => e instanceof VigilError && e.code === 'RENDER');
      assert.ok((await readdir(out)).includes(RENDER_MARKER));
      assert.equal((await readdir(join(out, 'observer', 'etc', 'vigil'))).length, 2);
      assert.deepEqual(await readdir(dir), ['rendered']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
