import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import type { Cluster } from '../config/schema.ts';
import { minLeaseTtlSeconds, renderEtcd } from './etcd.ts';
import { etcdEndpoints } from '../layout/network.ts';
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
    assert.equal(doc['initial-cluster'], 'observer=http://10.0.0.10:2380,etcd2=http://10.0.0.31:2380,etcd3=http://10.0.0.32:2380');
    assert.equal(doc['listen-client-urls'], 'http://10.0.0.10:2379,http://127.0.0.1:2379');
    assert.equal(doc['advertise-client-urls'], 'http://10.0.0.10:2379');
    assert.equal(doc['listen-peer-urls'], 'http://10.0.0.10:2380');
    assert.equal(doc['initial-cluster-token'], 'vigil-vigil');
    assert.equal(doc['initial-cluster-state'], 'new');
    assert.equal(doc['enable-v2'], false);
    assert.equal(doc['heartbeat-interval'], 100);
    assert.equal(doc['election-timeout'], 1000);
    assert.deepEqual(etcdEndpoints(c), ['http://10.0.0.10:2379', 'http://10.0.0.31:2379', 'http://10.0.0.32:2379']);
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

  it('starts a real etcd 3.4 that reports healthy', { timeout: 60_000 }, async () => {
    const dir = await tempDir('vigil-etcd-');
    const clientPort = await freePort();
    const peerPort = await freePort();
    const c = clusterFixture('pair', { addresses: { observer: '127.0.0.1' } });
    const observer = c.machines.find((m) => m.name === 'observer')!;
    const config = join(dir, 'etcd.yml');
    await writeFile(config, renderEtcd(c, observer, { clientPort, peerPort, dataDir: join(dir, 'data') }).content);
    const child = spawn('etcd', ['--config-file', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-200_000)));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      const endpoint = `http://127.0.0.1:${clientPort}`;
      const deadline = Date.now() + 20_000;
      let last = '';
      for (;;) {
        const r = await runTool('etcdctl', ['--endpoints', endpoint, '--dial-timeout', '1s', 'endpoint', 'health'], {
          env: { ...process.env, ETCDCTL_API: '3' },
        });
        last = r.stdout + r.stderr;
        if (r.code === 0 && /is healthy/.test(last)) break;
        if (child.exitCode !== null) assert.fail(`etcd exited with ${child.exitCode}:\n${log}`);
        if (Date.now() > deadline) assert.fail(`etcd not healthy after 20 s: ${last}\n${log}`);
        await sleep(200);
      }
      // The v2 API is off: only v3 is served.
      const v2 = await fetch(`${endpoint}/v2/keys`).then((r) => r.status);
      assert.equal(v2, 404);
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
