import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The lab's directory is fixed when src/lab/paths.ts loads: point it at a temp directory first.
let dir: string;
let lab: typeof import('./lab.ts');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-labshell-'));
  process.env.VIGIL_LAB_DIR = dir;
  lab = await import('./lab.ts');
});
after(async () => rm(dir, { recursive: true, force: true }));

test('a machine path under one of the four roots is in the machine\'s directory; others are this host\'s', () => {
  assert.equal(lab.labHostPath('app1', '/etc/vigil/refapp/application.properties'), join(dir, 'hosts', 'app1', 'etc', 'refapp', 'application.properties'));
  assert.equal(lab.labHostPath('db1', '/var/lib/vigil'), join(dir, 'hosts', 'db1', 'data'));
  assert.equal(lab.labHostPath('db1', '/run/vigil/haproxy.sock'), join(dir, 'hosts', 'db1', 'run', 'haproxy.sock'));
  assert.equal(lab.labHostPath('db1', '/etc/vigilant'), '/etc/vigilant');
  assert.equal(lab.labHostPath('db1', '/proc/1/cgroup'), '/proc/1/cgroup');
});

test('files are written atomically with mode and owner, read back, and a missing one reads as null', async () => {
  const shell = new lab.LabShell('app1');
  await mkdir(join(dir, 'hosts', 'app1', 'etc'), { recursive: true });
  await shell.writeFile('/etc/vigil/secret.conf', 'x=1\n', { mode: 0o600, owner: 'root:root' });
  const host = join(dir, 'hosts', 'app1', 'etc', 'secret.conf');
  assert.equal(await readFile(host, 'utf8'), 'x=1\n');
  assert.equal((await stat(host)).mode & 0o777, 0o600);
  assert.equal((await shell.readFile('/etc/vigil/secret.conf'))?.toString(), 'x=1\n');
  assert.equal(await shell.readFile('/etc/vigil/none'), null);
  await assert.rejects(shell.writeFile('/etc/vigil/secret.conf', 'y', { owner: 'no-such-user-here' }));
  assert.equal(await readFile(host, 'utf8'), 'x=1\n', 'a failed write leaves the old file');
});

test('a command in a machine that does not exist fails with the nsenter error, not an exception', async () => {
  const r = await new lab.LabShell('no-such-machine').exec(['true'], { timeoutMs: 5000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /nsenter/);
});
