import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VIGIL_INSTALL } from '../layout/units.ts';
import type { ExecOptions, ExecResult } from '../remote/types.ts';
import { LocalShell } from '../testing/helpers.ts';
import { VigilError } from '../util/errors.ts';
import { readPasswordFile, setPasswordFile, tightenedMode, writePasswordFile } from './password-file.ts';

/** This machine, with the artifact's node being the node running the test. */
class NodeShell extends LocalShell {
  override exec(argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return super.exec(argv[0] === VIGIL_INSTALL.node ? [process.execPath, ...argv.slice(1)] : argv, opts);
  }
}

const PASSWORD = 'the-cluster-db-password';
const shell = new NodeShell('app1');
const root = process.getuid?.() === 0;
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function appDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vigil-pwfile-'));
  dirs.push(d);
  return d;
}

const step = (path: string, dryRun = false) =>
  setPasswordFile(shell, { path, format: 'properties', key: 'db.password' }, PASSWORD, { dryRun, source: 'vigil.yaml' });

async function refusal(p: Promise<unknown>, message: RegExp, fix?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof VigilError, String(err));
    assert.equal(err.code, 'APPLY');
    assert.match(err.problems[0]!.where, /^app1 \//);
    assert.match(err.problems[0]!.message, message);
    if (fix) assert.match(err.problems[0]!.fix, fix);
    assert.ok(!err.message.includes(PASSWORD));
    return true;
  });
}

describe("apply's password-file step (H3), on a real directory", () => {
  it('sets the key in a regular file: owner kept, mode kept when 640 or narrower, a new inode, no temporary file left', async () => {
    const d = await appDir();
    const f = join(d, 'app.properties');
    await writeFile(f, '# db\ndb.url=jdbc:postgresql://x/y\ndb.password=old\n', { mode: 0o640 });
    await chmod(f, 0o640);
    if (root) await chown(f, 1234, 1235);
    const before = await stat(f);
    assert.deepEqual(await step(f, true), ['set db.password in ' + f + " to the cluster's database password"]);
    assert.equal(await readFile(f, 'utf8'), '# db\ndb.url=jdbc:postgresql://x/y\ndb.password=old\n', 'plan writes nothing');
    assert.deepEqual(await step(f), ['set db.password in ' + f + " to the cluster's database password"]);
    const after = await stat(f);
    assert.equal(await readFile(f, 'utf8'), `# db\ndb.url=jdbc:postgresql://x/y\ndb.password=${PASSWORD}\n`);
    assert.equal(after.mode & 0o7777, 0o640);
    assert.equal(after.uid, before.uid);
    assert.equal(after.gid, before.gid);
    if (root) assert.deepEqual([after.uid, after.gid], [1234, 1235]);
    assert.notEqual(after.ino, before.ino, 'replaced by rename, not written in place');
    assert.deepEqual(await readdir(d), ['app.properties']);
    assert.deepEqual(await step(f), [], 'a second run changes nothing');
  });

  it('never widens a mode; a file others can read (0644) is tightened to 0640 and said so, even when the password is already right', async () => {
    const d = await appDir();
    const f = join(d, 'app.properties');
    await writeFile(f, `db.password=${PASSWORD}\n`);
    await chmod(f, 0o644);
    assert.deepEqual(await step(f), [`tighten ${f} from mode 0644 to 0640: it holds the database password`]);
    assert.equal((await stat(f)).mode & 0o7777, 0o640);
    await chmod(f, 0o600);
    await writeFile(f, 'db.password=x\n');
    await step(f);
    assert.equal((await stat(f)).mode & 0o7777, 0o600, '0600 stays 0600');
    assert.deepEqual([0o644, 0o666, 0o640, 0o600, 0o400, 0o755, 0o4755, 0o660].map(tightenedMode), [0o640, 0o640, 0o640, 0o600, 0o400, 0o640, 0o640, 0o640]);
  });

  it('a symlink to another file (as to /etc/shadow) is refused: neither the link nor its target changes', async () => {
    const d = await appDir();
    const secret = join(await appDir(), 'shadow');
    await writeFile(secret, 'root:$6$hash:19000:0:99999:7:::\n', { mode: 0o600 });
    await chmod(secret, 0o600);
    const f = join(d, 'app.properties');
    await symlink(secret, f);
    await refusal(step(f), new RegExp(`is a symbolic link \\(to ${secret.replaceAll('$', '\\$')}\\)`), /replace the link with the real file/);
    await refusal(step(f, true), /is a symbolic link/);
    assert.equal(await readFile(secret, 'utf8'), 'root:$6$hash:19000:0:99999:7:::\n');
    assert.equal((await stat(secret)).mode & 0o7777, 0o600);
    assert.equal(await readlink(f), secret);
    assert.deepEqual(await readdir(d), ['app.properties']);
  });

  it('a FIFO, a directory and a hard link are refused, without blocking', async () => {
    const d = await appDir();
    const fifo = join(d, 'fifo.properties');
    execFileSync('mkfifo', [fifo]);
    await refusal(step(fifo), /is a FIFO, not a regular file/, /correct the path/);
    const sub = join(d, 'dir.properties');
    await mkdir(sub);
    await refusal(step(sub), /is a directory, not a regular file/);
    const other = join(d, 'other');
    await writeFile(other, 'db.password=x\n');
    const hard = join(d, 'hard.properties');
    await link(other, hard);
    await refusal(step(hard), /has 2 hard links/);
    assert.equal(await readFile(other, 'utf8'), 'db.password=x\n');
  });

  it('a directory reached through a symlink is refused, naming where it resolves', async () => {
    const real = await appDir();
    await writeFile(join(real, 'app.properties'), 'db.password=x\n');
    const d = await appDir();
    await symlink(real, join(d, 'conf'));
    await refusal(step(join(d, 'conf', 'app.properties')), new RegExp(`directory reached through a symbolic link \\(it resolves to ${real}\\)`));
    assert.equal(await readFile(join(real, 'app.properties'), 'utf8'), 'db.password=x\n');
  });

  it('a file swapped between the read and the write (a symlink put in its place) is not written through', async () => {
    const d = await appDir();
    const f = join(d, 'app.properties');
    await writeFile(f, 'db.password=x\n', { mode: 0o600 });
    const st = await readPasswordFile(shell, f);
    assert.ok(st);
    const secret = join(await appDir(), 'cron');
    await writeFile(secret, 'root-owned\n');
    await rename(f, join(d, 'moved'));
    await symlink(secret, f);
    await refusal(writePasswordFile(shell, f, st, 'db.password=y\n', 0o600), /symbolic link/);
    assert.equal(await readFile(secret, 'utf8'), 'root-owned\n');
    // Another regular file in its place: refused as changed.
    await rm(f);
    await writeFile(f, 'db.password=z\n');
    await refusal(writePasswordFile(shell, f, st, 'db.password=y\n', 0o600), /was replaced while apply was reading or writing it/, /run `vigil apply` again/);
    assert.equal(await readFile(f, 'utf8'), 'db.password=z\n');
    assert.ok((await lstat(f)).isFile());
  });

  it('a missing file says so, as before', async () => {
    const d = await appDir();
    await refusal(step(join(d, 'none.properties')), /the application config file is missing/, /install the application on app1 first/);
    await refusal(step(join(d, 'no-dir', 'x.properties')), /its directory does not exist/);
  });
});
