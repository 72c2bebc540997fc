import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The lab's directory is fixed when src/lab/paths.ts loads: point it at a temp directory first.
let dir: string;
let lab: typeof import('./shell.ts');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-labshell-'));
  process.env.VIGIL_LAB_DIR = dir;
  lab = await import('./shell.ts');
});
after(async () => rm(dir, { recursive: true, force: true }));

test('a machine path is in its overlay root; /run and /tmp only while the machine runs', () => {
  assert.equal(
    lab.labHostPath('app1', '/etc/vigil/refapp/application.properties'),
    join(dir, 'hosts', 'app1', 'root', 'etc', 'vigil', 'refapp', 'application.properties'),
  );
  assert.equal(lab.labHostPath('db1', '/var/lib/vigil'), join(dir, 'hosts', 'db1', 'root', 'var', 'lib', 'vigil'));
  assert.throws(() => lab.labHostPath('db1', '/run/vigil/haproxy.sock'), /db1 is not running/);
});

test('files are written atomically with their mode, read back, and a missing one reads as null', async () => {
  const shell = new lab.LabShell('app1');
  await mkdir(join(dir, 'hosts', 'app1', 'root', 'etc', 'vigil'), { recursive: true });
  await shell.writeFile('/etc/vigil/secret.conf', 'x=1\n', { mode: 0o600 });
  const host = join(dir, 'hosts', 'app1', 'root', 'etc', 'vigil', 'secret.conf');
  assert.equal(await readFile(host, 'utf8'), 'x=1\n');
  assert.equal((await stat(host)).mode & 0o777, 0o600);
  assert.equal((await shell.readFile('/etc/vigil/secret.conf'))?.toString(), 'x=1\n');
  assert.equal(await shell.readFile('/etc/vigil/none'), null);
  // The owner is set by the machine's own chown: on a machine that does not run, the write fails.
  await assert.rejects(shell.writeFile('/etc/vigil/secret.conf', 'y', { owner: 'root:root' }), /app1/);
  assert.equal(await readFile(host, 'utf8'), 'x=1\n', 'a failed write leaves the old file');
});

test('a command in a machine that does not run answers as SSH to a host that is down (exit 255), not an exception', async () => {
  const r = await new lab.LabShell('no-such-machine').exec(['true'], { timeoutMs: 5000 });
  assert.equal(r.code, 255);
  assert.match(r.stderr, /no-such-machine is not running/);
});
