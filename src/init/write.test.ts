/**
 * Writing init's files (all or nothing, modes, --force), and contacting machines: host keys
 * pinned and the admin key installed with a password, against a real sshd (src/testing/sshd.ts)
 * that stands for three machines on 127.0.0.1-3.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCluster, loadSecrets } from '../config/load.ts';
import { loadPki } from '../pki/ca.ts';
import { verifyPassword } from '../dashboard/users.ts';
import { fingerprint } from '../remote/known-hosts.ts';
import { openClusterSsh } from '../remote/ssh.ts';
import { sshdUnavailable, startTestSshd, type TestSshd } from '../testing/sshd.ts';
import { run } from '../util/exec.ts';
import { runInit, type InitOptions } from './init.ts';
import { parseAnswers, renderInit } from './render.ts';
import { writeInit } from './write.ts';
import { rejectionOf } from '../testing/helpers.ts';

const modeOf = async (p: string) => ((await stat(p)).mode & 0o777).toString(8);

const pairAnswers = (port = 22, extra = '') =>
  parseAnswers(
    `topology: pair\nssh: { port: ${port} }\nmachines:\n  observer: { address: 127.0.0.1 }\n  app1: { address: 127.0.0.2 }\n  app2: { address: 127.0.0.3 }\n${extra}`,
    'answers.yaml',
  );

describe('init writes its files all or nothing', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-init-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes every file with its mode, loadable by the loaders the other commands use', async () => {
    const out = join(dir, 'new', 'cluster'); // created, parents too
    const answers = pairAnswers();
    const r = await writeInit(renderInit(answers), answers, { dir: out, ssh: 'skip' });
    const all = ['dashboard-admin.password', 'pki', 'ssh', 'vigil.secrets.yaml', 'vigil.yaml'];
    assert.deepEqual(r.written.sort(), all);
    assert.deepEqual((await readdir(out)).sort(), all, 'no staging directory left');
    assert.equal(await modeOf(join(out, 'dashboard-admin.password')), '600');
    assert.equal(await modeOf(join(out, 'vigil.yaml')), '644');
    assert.equal(await modeOf(join(out, 'vigil.secrets.yaml')), '600');
    assert.equal(await modeOf(join(out, 'pki', 'ca.key')), '600');
    assert.equal(await modeOf(join(out, 'pki', 'admin.key')), '600');
    assert.equal(await modeOf(join(out, 'pki', 'ca.pem')), '644');
    assert.equal(await modeOf(join(out, 'ssh')), '700');
    assert.equal(await modeOf(join(out, 'ssh', 'id_ed25519')), '600');
    assert.equal(await modeOf(join(out, 'ssh', 'id_ed25519.pub')), '644');
    const cluster = await loadCluster(join(out, 'vigil.yaml'));
    const secrets = await loadSecrets(cluster);
    // The dashboard's admin: the secrets file has the hash of the password in dashboard-admin.password, never the password.
    const dashboardPassword = (await readFile(join(out, 'dashboard-admin.password'), 'utf8')).trim();
    assert.deepEqual(
      secrets.dashboardUsers?.map((u) => [u.name, u.role]),
      [['admin', 'admin']],
    );
    assert.equal(await verifyPassword(secrets.dashboardUsers![0]!.passwordHash, dashboardPassword), true);
    assert.ok(!(await readFile(join(out, 'vigil.secrets.yaml'), 'utf8')).includes(dashboardPassword));
    const admin = await loadPki(join(out, 'pki'), 'admin');
    assert.match(admin.cert, /BEGIN CERTIFICATE/);
    // OpenSSH reads the key and derives the same public key.
    const derived = (await run('ssh-keygen', ['-y', '-f', join(out, 'ssh', 'id_ed25519')])).stdout.trim();
    assert.equal(derived.split(' ').slice(0, 2).join(' '), (await readFile(join(out, 'ssh', 'id_ed25519.pub'), 'utf8')).split(' ').slice(0, 2).join(' '));
    assert.deepEqual(
      r.machines.map((m) => [m.machine, m.pin, m.key]),
      [
        ['observer', 'skipped', 'skipped'],
        ['app1', 'skipped', 'skipped'],
        ['app2', 'skipped', 'skipped'],
      ],
    );
  });

  it('refuses to overwrite without --force, and keeps the replaced files with it', async () => {
    const out = join(dir, 'twice');
    const answers = pairAnswers();
    await writeInit(renderInit(answers), answers, { dir: out, ssh: 'skip' });
    const before = await readFile(join(out, 'pki', 'ca.key'), 'utf8');
    const err = await rejectionOf(writeInit(renderInit(answers), answers, { dir: out, ssh: 'skip' }));
    assert.equal(err.code, 'INIT');
    assert.match(err.message, /vigil\.secrets\.yaml, dashboard-admin\.password, pki, ssh, vigil\.yaml already exist/);
    assert.match(err.message, /--force/);
    assert.equal(await readFile(join(out, 'pki', 'ca.key'), 'utf8'), before, 'untouched');

    const r = await writeInit(renderInit(answers), answers, { dir: out, ssh: 'skip', force: true });
    assert.ok(r.backup);
    assert.equal(await readFile(join(r.backup, 'pki', 'ca.key'), 'utf8'), before, 'the old CA key is kept in the backup');
    assert.notEqual(await readFile(join(out, 'pki', 'ca.key'), 'utf8'), before);
  });

  it('leaves nothing behind when a machine cannot be reached', async () => {
    const out = join(dir, 'unreachable');
    const answers = pairAnswers(1); // nothing listens on port 1
    const err = await rejectionOf(writeInit(renderInit(answers), answers, { dir: out, ssh: { confirm: () => true, connectTimeoutMs: 3000 } }));
    assert.equal(err.code, 'SSH_UNREACHABLE');
    assert.match(err.message, /^observer \(root@127\.0\.0\.1:1\)/);
    await assert.rejects(stat(out), { code: 'ENOENT' }, 'the directory it created is gone again');
  });

  it('fails at once without a terminal or --accept-host-keys, before writing anything', async () => {
    const out = join(dir, 'no-decision');
    const file = join(dir, 'answers.yaml');
    await writeFile(file, 'topology: pair\nmachines: { observer: { address: 10.0.0.10 }, app1: { address: 10.0.0.11 }, app2: { address: 10.0.0.12 } }\n');
    const o: InitOptions = { dir: out, answers: file, ssh: true };
    const err = await rejectionOf(runInit(o, { say: () => {}, interactive: false }));
    assert.match(err.message, /--accept-host-keys/);
    await assert.rejects(stat(out), { code: 'ENOENT' });
    assert.equal((await rejectionOf(runInit({ dir: out, ssh: true }, { say: () => {}, interactive: false }))).code, 'USAGE', 'no answers and no terminal');
  });
});

describe('init contacts the machines (real sshd)', { skip: sshdUnavailable() ?? false, timeout: 120_000 }, () => {
  const password = 'init-test-password';
  let sshd: TestSshd;
  let dir = '';
  const listen = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
  before(async () => {
    sshd = await startTestSshd({ password, listen });
    dir = await mkdtemp(join(tmpdir(), 'vigil-init-ssh-'));
  });
  after(async () => {
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const authorized = () => readFile(join(sshd.rootHome, '.ssh', 'authorized_keys'), 'utf8').catch(() => '');

  it('takes the admin key off again when a later machine refuses its password, and writes nothing', async () => {
    const out = join(dir, 'wrong-password');
    const answers = pairAnswers(sshd.port, `  # app2 has its own, wrong, password\n`);
    answers.ssh.password = password;
    answers.machines.find((m) => m.name === 'app2')!.sshPassword = 'not-the-password';
    const seen: string[] = [];
    const err = await rejectionOf(writeInit(renderInit(answers), answers, { dir: out, ssh: { confirm: () => true }, progress: (l) => seen.push(l) }));
    assert.equal(err.code, 'SSH_AUTH');
    assert.match(err.message, /^app2 \(root@127\.0\.0\.3:\d+\): the password was refused/);
    assert.ok(!err.message.includes('not-the-password'));
    assert.ok(
      seen.some((l) => /observer: the admin key installed by this run was removed again/.test(l)),
      seen.join('\n'),
    );
    assert.ok(!(await authorized()).includes('vigil-admin@'), 'no admin key left on the machine');
    await assert.rejects(stat(out), { code: 'ENOENT' });
  });

  it('pins every host key (asking), installs the admin key with the password once, and the written files log in', async () => {
    const out = join(dir, 'cluster');
    const answers = pairAnswers(sshd.port);
    answers.ssh.password = password;
    const asked: string[] = [];
    const lines: string[] = [];
    const r = await writeInit(renderInit(answers), answers, {
      dir: out,
      ssh: { confirm: (k, t) => (asked.push(`${t.machine} ${k.fingerprint}`), true) },
      progress: (l) => lines.push(l),
    });
    const fp = /(SHA256:\S+)/.exec((await run('ssh-keygen', ['-lf', sshd.hostKeyPub()])).stdout)![1]!;
    assert.deepEqual(asked, [`observer ${fp}`, `app1 ${fp}`, `app2 ${fp}`]);
    assert.deepEqual(
      r.machines.map((m) => [m.machine, m.pin, m.fingerprint, m.key]),
      // One sshd stands for the three machines: the key is there already for the second and third.
      [
        ['observer', 'pinned', fp, 'added'],
        ['app1', 'pinned', fp, 'present'],
        ['app2', 'pinned', fp, 'present'],
      ],
    );
    assert.ok(
      lines.some((l) => l.includes(`observer 127.0.0.1:${sshd.port} ssh-ed25519 ${fp} pinned`)),
      lines.join('\n'),
    );
    const known = await readFile(join(out, 'vigil.known_hosts'), 'utf8');
    for (const a of listen) assert.ok(known.includes(`[${a}]:${sshd.port} ssh-ed25519 `), known);
    assert.equal(await modeOf(join(out, 'vigil.known_hosts')), '644');
    const pub = (await readFile(join(out, 'ssh', 'id_ed25519.pub'), 'utf8')).trim();
    assert.equal((await authorized()).trim(), pub);
    for (const f of await readdir(out, { recursive: true })) {
      if (f.startsWith('ssh') || f.startsWith('pki')) continue;
      assert.ok(!(await readFile(join(out, f), 'utf8').catch(() => '')).includes(password), `${f} holds no SSH password`);
    }

    const cluster = await loadCluster(join(out, 'vigil.yaml'));
    for (const m of cluster.machines) {
      const s = await openClusterSsh(join(out, 'vigil.yaml'), m);
      try {
        assert.equal((await s.exec(['id', '-un'])).stdout.trim(), 'root');
      } finally {
        await s.close();
      }
    }
  });

  it('--force keeps and checks the old pins: a changed host key stops init', async () => {
    const out = join(dir, 'cluster');
    const old = (await readFile(join(out, 'vigil.known_hosts'), 'utf8')).split('\n')[0]!.split(' ')[2]!;
    await sshd.restart({ newHostKey: true });
    const answers = pairAnswers(sshd.port);
    const err = await rejectionOf(writeInit(renderInit(answers), answers, { dir: out, force: true, ssh: { confirm: () => true } }));
    assert.equal(err.code, 'SSH_HOST_KEY');
    assert.ok(err.message.includes(`pinned ${fingerprint(Buffer.from(old, 'base64'))}`), err.message);
    assert.ok(!(await readdir(out)).some((f) => f.startsWith('.vigil-init')), 'no staging or backup directory left');
  });
});
