/**
 * From bare machines to a cluster's files: `vigil lab up --bare` gives five machines that run
 * only sshd, with a root password; `vigil init --answers` (its non-interactive form) writes the
 * cluster file, the secrets, the CA, pins every host key and installs the admin key with the
 * password once. Then the SSH transport's failures, each a clear error: a wrong password, a
 * changed host key, a machine down, a closed port.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { loadCluster } from '../../src/config/load.ts';
import { labBlock, labDown, labKill, labRevive, labUnblock } from '../../src/lab/lab.ts';
import { labUpBare } from '../../src/lab/bare.ts';
import { hostPathOf } from '../../src/lab/paths.ts';
import { openClusterSsh } from '../../src/remote/ssh.ts';
import { createKeyPair } from '../../src/sync/keys.ts';
import { VigilError } from '../../src/util/errors.ts';
import { vigil } from './run-vigil.ts';

async function sshError(clusterFile: string, name: string): Promise<VigilError> {
  const cluster = await loadCluster(clusterFile);
  const m = cluster.machines.find((x) => x.name === name)!;
  const shell = await openClusterSsh(clusterFile, m, { connectTimeoutMs: 3000 });
  try {
    await shell.exec(['true']);
  } catch (err) {
    assert.ok(err instanceof VigilError, `a VigilError, not ${String(err)}`);
    return err;
  } finally {
    await shell.close();
  }
  throw new Error(`connecting to ${name} succeeded`);
}

describe('bare machines, vigil init, and the SSH transport', () => {
  let answers: string;
  let dir: string;

  before(async () => {
    await labDown();
    answers = await labUpBare({ topology: 'distributed' }, (l) => console.log(`# lab: ${l}`));
    dir = await mkdtemp(join(tmpdir(), 'vigil-init-'));
  });
  after(async () => {
    await labDown();
    await rm(dir, { recursive: true, force: true });
  });

  it('a wrong password stops init with SSH_AUTH, names the machine, keeps no file and no key', async () => {
    const wrong = join(dir, 'wrong-answers.yaml');
    const doc = parse(await readFile(answers, 'utf8')) as { ssh: { password: string } };
    doc.ssh.password = 'not-the-root-password';
    await writeFile(wrong, stringify(doc), { mode: 0o600 });
    const target = join(dir, 'wrong');
    const r = await vigil(['init', '--answers', wrong, '--accept-host-keys', '-d', target]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /error \[SSH_AUTH\]/);
    assert.match(r.out, /observer \(root@10\.213\.\d+\.10:22\)/);
    assert.doesNotMatch(r.out, /not-the-root-password/);
    assert.deepEqual(await readdir(target).catch(() => []), [], 'nothing written');
  });

  it('init --answers writes the cluster, pins every host key and installs the admin key', async () => {
    const started = performance.now();
    const r = await vigil(['init', '--answers', answers, '--accept-host-keys', '-d', dir]);
    console.log(`# bare machines to the cluster's files and keys: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /app1 10\.213\.\d+\.11:22 ssh-ed25519 SHA256:\S+ pinned/);
    const cluster = await loadCluster(join(dir, 'vigil.yaml'));
    assert.deepEqual(cluster.machines.map((m) => m.name).sort(), ['app1', 'app2', 'db1', 'db2', 'observer']);
    assert.equal((await stat(join(dir, 'vigil.secrets.yaml'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'pki', 'ca.key'))).mode & 0o777, 0o600);
    assert.equal(
      (await readFile(join(dir, 'vigil.known_hosts'), 'utf8'))
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('#')).length,
      5,
    );
    // Keys only from now on: each machine answers as itself.
    for (const m of cluster.machines) {
      const shell = await openClusterSsh(join(dir, 'vigil.yaml'), m);
      try {
        const res = await shell.exec(['ip', '-4', '-o', 'addr', 'show', 'eth0']);
        assert.equal(res.code, 0);
        assert.ok(res.stdout.includes(`${m.address}/`), `${m.name} answers from ${m.address}`);
      } finally {
        await shell.close();
      }
    }
    const again = await vigil(['init', '--answers', answers, '--accept-host-keys', '-d', dir]);
    assert.equal(again.code, 1);
    assert.match(again.out, /--force/, 'a second init refuses to overwrite and says how');
  });

  it('preflight passes on the bare machines and names a closed port with its fix', async () => {
    const ok = await vigil(['preflight', '-c', join(dir, 'vigil.yaml')]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /db1: Debian GNU\/Linux 13[^\n]*\n[\s\S]*preflight: every machine can take the cluster/);
    await labBlock('db2', 5432);
    try {
      const closed = await vigil(['preflight', '-c', join(dir, 'vigil.yaml')]);
      assert.equal(closed.code, 1, closed.out);
      assert.match(closed.out, /FAIL +ports: db1 cannot reach db2:5432 \(PostgreSQL\): no answer \(a firewall drops it\)/);
      assert.match(closed.out, /fix: open TCP port 5432 on db2 for db1/);
    } finally {
      await labUnblock('db2');
    }
  });

  it('a changed host key is refused with both fingerprints', async () => {
    const key = hostPathOf('app1', '/etc/ssh/ssh_host_ed25519_key');
    await rm(key);
    await rm(`${key}.pub`);
    await createKeyPair(key, 'host@app1-reinstalled');
    await labKill('app1');
    await labRevive('app1'); // the machine boots again: sshd starts with the new key
    const err = await sshError(join(dir, 'vigil.yaml'), 'app1');
    assert.equal(err.code, 'SSH_HOST_KEY');
    assert.match(err.message, /app1/);
    assert.equal((err.message.match(/SHA256:[A-Za-z0-9+/]+/g) ?? []).length >= 2, true, 'the pinned and the offered fingerprint');
  });

  it('a machine that is down, or whose SSH port is closed, is SSH_UNREACHABLE', async () => {
    await labKill('db1');
    const down = await sshError(join(dir, 'vigil.yaml'), 'db1');
    assert.equal(down.code, 'SSH_UNREACHABLE');
    assert.match(down.message, /db1 \(root@10\.213\.\d+\.21:22\)/);
    await labBlock('db2', 22);
    try {
      const closed = await sshError(join(dir, 'vigil.yaml'), 'db2');
      assert.equal(closed.code, 'SSH_UNREACHABLE');
      assert.match(closed.message, /db2/);
    } finally {
      await labUnblock('db2');
    }
  });
});
