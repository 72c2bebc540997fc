/**
 * The SSH transport against a real OpenSSH server that each suite starts itself (test-sshd.ts).
 */
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import ssh2 from 'ssh2';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../util/exec.ts';
import { VigilError } from '../util/errors.ts';
import { freePort } from '../util/net.ts';
import { addKnownHost, parseKnownHosts } from './known-hosts.ts';
import {
  generateAdminKey,
  installAdminKey,
  openSshEd25519,
  openSsh,
  pinHostKey,
  readAdminKey,
  remoteCommand,
  removeAdminKey,
  shellQuote,
  type AdminKeyPair,
  type SshShell,
  type SshTarget,
} from './ssh.ts';
import { sshdUnavailable, startTestSshd, type TestSshd } from '../testing/sshd.ts';
import { rejectionOf } from '../testing/helpers.ts';
import type { ExecResult } from './types.ts';

const skip = sshdUnavailable() ?? false;

/** Runs fn with the shell and always closes it: a failing assertion must not leave a connection open (the test process would never end). */
async function closing<T>(s: SshShell, fn: (s: SshShell) => Promise<T>): Promise<T> {
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** `ssh-keygen -lf` on the host key: OpenSSH's own fingerprint, to compare ours with. */
async function opensshFingerprint(pubFile: string): Promise<string> {
  const out = (await run('ssh-keygen', ['-lf', pubFile])).stdout;
  return /(SHA256:\S+)/.exec(out)![1]!;
}

/** Starts n short commands at once on the shell, of six kinds (see checkMixed): some with stdin, some failing, some killed by a signal. */
function runMixed(s: SshShell, n: number): Promise<PromiseSettledResult<ExecResult>[]> {
  return Promise.allSettled(
    Array.from({ length: n }, (_, i) => {
      switch (i % 6) {
        case 0:
          return s.exec(['true']);
        case 1:
          return s.exec(['stat', '-L', '--printf', '%n %F\\n', '--', '/', '/etc', '/nonexistent']);
        case 2:
          return s.exec(['df', '-B1', '--output=target,size', '--', '/']);
        case 3:
          return s.exec(['cat'], { input: 'x'.repeat(i * 37) });
        case 4:
          return s.exec(['sh', '-c', `printf '%0${i * 13}d' 0; exit ${i % 7}`]);
        default:
          return s.exec(['sh', '-c', 'kill -TERM $$']);
      }
    }),
  );
}

/** Asserts that every command of runMixed succeeded in transport with its own exit status and output. */
function checkMixed(results: PromiseSettledResult<ExecResult>[]): void {
  const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [`#${i}: ${String((r.reason as Error).message)}`] : []));
  assert.deepEqual(failures, [], `${failures.length} of ${results.length} commands failed`);
  for (const [i, settled] of results.entries()) {
    const r = (settled as PromiseFulfilledResult<ExecResult>).value;
    const what = `#${i}: ${JSON.stringify(r).slice(0, 300)}`;
    switch (i % 6) {
      case 0:
        assert.deepEqual(r, { code: 0, stdout: '', stderr: '' }, what);
        break;
      case 1:
        assert.equal(r.code, 1, what); // /nonexistent is missing; stat still prints the others
        assert.equal(r.stdout, '/ directory\n/etc directory\n', what);
        assert.match(r.stderr, /nonexistent/, what);
        break;
      case 2:
        assert.equal(r.code, 0, what);
        assert.match(r.stdout, /^\s*Mounted on\s+1B-blocks\n\/\s+\d+\n$/, what);
        break;
      case 3:
        assert.deepEqual(r, { code: 0, stdout: 'x'.repeat(i * 37), stderr: '' }, what);
        break;
      case 4:
        assert.deepEqual(r, { code: i % 7, stdout: '0'.repeat(i * 13), stderr: '' }, what);
        break;
      default:
        assert.deepEqual(r, { code: 128 + 15, stdout: '', stderr: '' }, `${what}: killed by SIGTERM`);
    }
  }
}

describe('shell quoting', () => {
  it('leaves plain words alone and single-quotes everything else', () => {
    assert.equal(shellQuote('abc-1.2/x:y=z@w%+,'), 'abc-1.2/x:y=z@w%+,');
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote('a b'), "'a b'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote('$HOME'), "'$HOME'");
    assert.throws(() => shellQuote('a\0b'), VigilError);
  });

  it('wraps commands in timeout, and in sudo -n for users other than root', () => {
    assert.equal(remoteCommand(['echo', 'a b'], { sudo: false, timeoutMs: 1500 }), "timeout -k 2s 1.500s echo 'a b'");
    assert.equal(remoteCommand(['id'], { sudo: true, timeoutMs: 30_000 }), 'sudo -n -- timeout -k 2s 30.000s id');
    assert.throws(() => remoteCommand([], { sudo: false, timeoutMs: 1 }), VigilError);
  });
});

describe('admin keys', () => {
  it('are OpenSSH ed25519 keys that ssh-keygen and ssh2 read, also when the public key starts with a zero byte', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-keys-'));
    try {
      // ssh2's own generator drops that zero byte (1 key in 256); find such a key deterministically.
      let zeroLed: { seed: Buffer; pub: Buffer } | undefined;
      for (let i = 0; !zeroLed; i++) {
        const seed = createHash('sha256').update(`seed-${i}`).digest();
        const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
        const pub = Buffer.from(createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' }).x!, 'base64url');
        if (pub[0] === 0) zeroLed = { seed, pub };
      }
      const keys = [openSshEd25519(zeroLed.seed, zeroLed.pub, 'zero-led'), generateAdminKey('fresh'), generateAdminKey('fresh again')];
      for (const [i, k] of keys.entries()) {
        const file = join(dir, `k${i}`);
        await writeFile(file, k.privateKey, { mode: 0o600 });
        assert.equal(
          (await run('ssh-keygen', ['-y', '-f', file])).stdout.trim().split(' ').slice(0, 2).join(' '),
          k.publicKey.split(' ').slice(0, 2).join(' '),
        );
        assert.ok(!(ssh2.utils.parseKey(k.privateKey) instanceof Error));
      }
      const blob = Buffer.from(keys[0]!.publicKey.split(' ')[1]!, 'base64');
      assert.deepEqual([blob.length, blob.readUInt32BE(15), blob[19]], [51, 32, 0], 'all 32 bytes, the zero first');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SSH transport against a real sshd (key login)', { skip, timeout: 120_000 }, () => {
  let sshd: TestSshd;
  let dir = '';
  let knownHosts = '';
  let admin: AdminKeyPair;
  let target: SshTarget;
  const accept = () => true;

  before(async () => {
    sshd = await startTestSshd();
    dir = await mkdtemp(join(tmpdir(), 'vigil-ssh-test-'));
    knownHosts = join(dir, 'vigil.known_hosts');
    admin = generateAdminKey('vigil-test');
    await writeFile(sshd.authorizedKeys, `${admin.publicKey}\n`);
    target = { machine: 'app1', address: '127.0.0.1', port: sshd.port, user: 'root' };
  });
  after(async () => {
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const shell = (opts: { privateKey?: string; maxChannels?: number } = {}) =>
    openSsh(target, {
      knownHostsFile: knownHosts,
      privateKey: opts.privateKey ?? admin.privateKey,
      identityFile: join(dir, 'ssh/id_ed25519'),
      ...(opts.maxChannels ? { maxChannels: opts.maxChannels } : {}),
    });

  it('refuses to connect to a machine whose host key is not pinned', async () => {
    const err = await closing(shell(), (s) => rejectionOf(s.exec(['true'])));
    assert.equal(err.code, 'SSH_HOST_KEY');
    assert.match(err.message, /app1 \(root@127\.0\.0\.1:\d+\).*no host key is pinned/);
    assert.match(err.message, /vigil init --pin-only/);
  });

  it('pins the host key on first contact only when confirmed, with the fingerprint OpenSSH shows', async () => {
    const offered: string[] = [];
    const refused = await rejectionOf(pinHostKey(target, knownHosts, { confirm: (k) => (offered.push(k.fingerprint), false) }));
    assert.equal(refused.code, 'SSH_HOST_KEY');
    assert.match(refused.message, /was not accepted/);
    await assert.rejects(stat(knownHosts), { code: 'ENOENT' });

    const expected = await opensshFingerprint(sshd.hostKeyPub());
    assert.deepEqual(offered, [expected]);
    const pinned = await pinHostKey(target, knownHosts, { confirm: accept });
    assert.deepEqual(pinned, { type: 'ssh-ed25519', fingerprint: expected, status: 'pinned' });
    const again = await pinHostKey(target, knownHosts, { confirm: () => assert.fail('no question for a pinned machine') });
    assert.equal(again.status, 'already-pinned');

    const text = await readFile(knownHosts, 'utf8');
    assert.equal(text.split('\n').filter(Boolean).length, 1, 'pinned once');
    assert.ok(text.startsWith(`[127.0.0.1]:${sshd.port} ssh-ed25519 `), text);
    assert.equal(((await stat(knownHosts)).mode & 0o777).toString(8), '644');
  });

  it('writes a file OpenSSH itself trusts (ssh -o UserKnownHostsFile=... StrictHostKeyChecking=yes)', async () => {
    const key = join(dir, 'id_ed25519');
    await writeFile(key, admin.privateKey, { mode: 0o600 });
    const ssh = [
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-i',
      key,
      '-p',
      String(sshd.port),
      'root@127.0.0.1',
    ];
    const r = await run('ssh', [...ssh, 'echo', 'trusted'], { timeoutMs: 15_000 });
    assert.equal(r.stdout.trim(), 'trusted');
  });

  it('passes every argument through unchanged: spaces, quotes, $, backquotes, globs, newlines', async () => {
    const s = shell();
    try {
      const args = ['a b', "it's", '"double"', '$HOME', '`id`', '$(id)', '*', 'line1\nline2', '', '; echo injected', 'tab\there', 'ünïcödé', "\\'"];
      const r = await s.exec(['printf', '%s\\0', ...args]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split('\0').slice(0, -1), args);
    } finally {
      await s.close();
    }
  });

  it('feeds stdin, returns exit codes and stderr, and times a hung command out with 124', async () => {
    const s = shell();
    try {
      const big = Buffer.alloc(3 * 1024 * 1024, 'x');
      const sum = await s.exec(['sha256sum'], { input: big });
      assert.equal(sum.stdout.split(' ')[0], createHash('sha256').update(big).digest('hex'));
      assert.equal((await s.exec(['cat'], { input: 'hello\n' })).stdout, 'hello\n');
      const failed = await s.exec(['sh', '-c', 'echo out; echo oops >&2; exit 7']);
      assert.deepEqual(failed, { code: 7, stdout: 'out\n', stderr: 'oops\n' });
      assert.equal((await s.exec(['/nonexistent/program'])).code, 127);

      const marker = `${Date.now() % 100000}.25`;
      const t0 = performance.now();
      const hung = await s.exec(['sleep', marker], { timeoutMs: 700 });
      const ms = performance.now() - t0;
      assert.equal(hung.code, 124);
      assert.match(hung.stderr, /timed out after 700 ms on app1/);
      assert.ok(ms >= 650 && ms < 10_000, `took ${ms} ms`); // the 700 ms deadline ended it, long before the sleep's own end
      // The remote process is gone too, not just abandoned.
      assert.equal((await s.exec(['pgrep', '-f', `^sleep ${marker}$`])).code, 1);
    } finally {
      await s.close();
    }
  });

  it('runs many commands over one connection, several at once', async () => {
    const before = (sshd.log().match(/Accepted publickey/g) ?? []).length;
    const s = shell();
    try {
      const results = await Promise.all(Array.from({ length: 25 }, (_, i) => s.exec(['sh', '-c', `sleep 0.2; echo ${i}`])));
      assert.deepEqual(
        results.map((r) => r.stdout.trim()),
        Array.from({ length: 25 }, (_, i) => String(i)),
      );
      for (let i = 0; i < 5; i++) assert.equal((await s.exec(['true'])).code, 0);
    } finally {
      await s.close();
    }
    assert.equal((sshd.log().match(/Accepted publickey/g) ?? []).length - before, 1, 'one login for 30 commands');
    await assert.rejects(s.exec(['true']), VigilError, 'a closed shell refuses commands');
  });

  it('runs 200 short commands at once on one shell (far more than sshd allows at once), each with its own exit status and output', async () => {
    await pinHostKey(target, knownHosts, { confirm: accept }); // pinned already when the suite runs in order
    const s = shell();
    await closing(s, async () => {
      const t0 = performance.now();
      checkMixed(await runMixed(s, 200));
      assert.ok(performance.now() - t0 < 60_000, 'well within the deadlines');
    });
  });

  it('retries the channels sshd refuses at MaxSessions, which it frees a moment after they close', async () => {
    // Ten channels at once, as many as sshd allows: sshd refuses some opens ("no more sessions" in
    // its log, about one in four here) while it still counts channels that closed on our side;
    // those commands had not started, and run after a retry.
    await pinHostKey(target, knownHosts, { confirm: accept });
    const s = shell({ maxChannels: 10 });
    await closing(s, async () => checkMixed(await runMixed(s, 60)));
  });

  it('keeps every exit status when the event loop is too busy to read between a command starting and ending', async () => {
    // A caller busy between reads (doctor parses its probes' output on five machines at once)
    // gets sshd's reply to the exec request, the output, the exit status and the close of a
    // short command in one read. The exit status used to be emitted before anything listened
    // for it: "the connection closed before the command finished" for stat or df in doctor.
    // Here the event loop reads the socket once every 300 ms, longer than a short command
    // takes on sshd, so nearly every command gets its whole life in one read.
    await pinHostKey(target, knownHosts, { confirm: accept });
    const s = shell();
    await closing(s, async () => {
      await s.connect();
      let busy = true;
      const block = new Int32Array(new SharedArrayBuffer(4));
      const stall = () => {
        if (!busy) return;
        Atomics.wait(block, 0, 0, 300); // blocks the thread without spinning the CPU
        setImmediate(stall);
      };
      setImmediate(stall);
      try {
        checkMixed(await runMixed(s, 30));
      } finally {
        busy = false;
      }
    });
  });

  it('writes files atomically with mode and owner, and reads them back', async () => {
    const s = shell();
    try {
      const file = join(dir, 'files', 'settings.conf');
      await run('mkdir', ['-p', join(dir, 'files')]);
      assert.equal(await s.readFile(file), null);
      const content = Buffer.from('password=s3cret\nline two\n\0binary\xff');
      await s.writeFile(file, content, { mode: 0o640, owner: 'nobody:nogroup' });
      const st = await stat(file);
      assert.equal((st.mode & 0o777).toString(8), '640');
      assert.equal(st.uid, Number((await run('id', ['-u', 'nobody'])).stdout));
      assert.deepEqual(await s.readFile(file), content);
      await s.writeFile(file, 'replaced\n');
      assert.equal(await readFile(file, 'utf8'), 'replaced\n');
      assert.equal(((await stat(file)).mode & 0o777).toString(8), '644');
      assert.deepEqual(await readdir(join(dir, 'files')), ['settings.conf'], 'no temporary file left');

      const missingDir = await rejectionOf(s.writeFile(join(dir, 'nope', 'x'), 'x'));
      assert.equal(missingDir.code, 'REMOTE_COMMAND');
      assert.match(missingDir.message, /app1 .*nope\/x: writing the file failed/);
      assert.equal((await rejectionOf(s.writeFile('relative/path', 'x'))).code, 'USAGE');
      assert.equal((await rejectionOf(s.writeFile(file, 'x', { owner: 'x; rm -rf /' }))).code, 'USAGE');
      assert.equal((await rejectionOf(s.readFile(dir))).code, 'REMOTE_COMMAND', 'a directory cannot be read as a file');
    } finally {
      await s.close();
    }
  });

  it('fails with SSH_AUTH when the key is not authorised', async () => {
    const err = await closing(shell({ privateKey: generateAdminKey().privateKey }), (s) => rejectionOf(s.connect()));
    assert.equal(err.code, 'SSH_AUTH');
    assert.match(err.message, /app1 \(root@127\.0\.0\.1:\d+\): the admin key was refused for root/);
    assert.match(err.message, /ssh-copy-id -i .*id_ed25519\.pub -p \d+ -o UserKnownHostsFile=/);
  });

  it('fails with SSH_UNREACHABLE on a closed port', async () => {
    const port = await freePort();
    // Pinned for the closed port too, so the failure is the connection's, not the missing pin's.
    await addKnownHost(knownHosts, '127.0.0.1', port, parseKnownHosts(await readFile(knownHosts, 'utf8'))[0]!.key);
    const err = await closing(openSsh({ ...target, port }, { knownHostsFile: knownHosts, privateKey: admin.privateKey }), (s) => rejectionOf(s.connect()));
    assert.equal(err.code, 'SSH_UNREACHABLE');
    assert.ok(err.retryable);
    assert.match(err.message, new RegExp(`app1 \\(root@127\\.0\\.0\\.1:${port}\\): cannot reach SSH: connection refused`));
    assert.match(err.message, /nc -vz 127\.0\.0\.1/);
    const scan = await rejectionOf(pinHostKey({ ...target, port: await freePort() }, join(dir, 'other.known_hosts'), { confirm: accept }));
    assert.equal(scan.code, 'SSH_UNREACHABLE');
  });

  it('fails with SSH_HOST_KEY naming both fingerprints when the host key changed, and never re-pins', async () => {
    await pinHostKey(target, knownHosts, { confirm: accept }); // pinned already when the suite runs in order
    const old = await opensshFingerprint(sshd.hostKeyPub());
    await sshd.restart({ newHostKey: true });
    const now = await opensshFingerprint(sshd.hostKeyPub());
    assert.notEqual(old, now);
    const err = await closing(shell(), (s) => rejectionOf(s.exec(['true'])));
    assert.equal(err.code, 'SSH_HOST_KEY', err.message);
    assert.ok(err.message.includes(`pinned ${old}`), err.message);
    assert.ok(err.message.includes(`offered ${now}`), err.message);
    assert.match(err.message, /^app1 \(root@127\.0\.0\.1:\d+\)/);
    assert.match(err.message, /ssh-keygen -R '\[127\.0\.0\.1\]:\d+' -f /);
    const before = await readFile(knownHosts, 'utf8');
    const repin = await rejectionOf(pinHostKey(target, knownHosts, { confirm: accept }));
    assert.equal(repin.code, 'SSH_HOST_KEY');
    assert.equal(await readFile(knownHosts, 'utf8'), before, 'the pin is left as it was');
  });

  it('reads the admin key only when it is mode 600', async () => {
    const key = join(dir, 'id_loose');
    await writeFile(key, admin.privateKey, { mode: 0o644 });
    const err = await rejectionOf(readAdminKey(key));
    assert.match(err.message, /mode 0644/);
    await run('chmod', ['600', key]);
    assert.equal((await readAdminKey(key)).toString(), admin.privateKey);
    assert.equal((await rejectionOf(readAdminKey(join(dir, 'missing')))).code, 'SSH_AUTH');
  });
});

describe('SSH transport: the password installs the admin key once', { skip, timeout: 120_000 }, () => {
  const password = `pw-${Math.random().toString(36).slice(2)}'"$ x`;
  let sshd: TestSshd;
  let dir = '';
  let knownHosts = '';
  let target: SshTarget;
  let realRootKeys = '';

  before(async () => {
    realRootKeys = await readFile('/root/.ssh/authorized_keys', 'utf8').catch(() => '<absent>');
    sshd = await startTestSshd({ password });
    dir = await mkdtemp(join(tmpdir(), 'vigil-ssh-pw-test-'));
    knownHosts = join(dir, 'vigil.known_hosts');
    target = { machine: 'db1', address: '127.0.0.1', port: sshd.port, user: 'root' };
    await pinHostKey(target, knownHosts, { confirm: () => true });
  });
  after(async () => {
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
    assert.equal(await readFile('/root/.ssh/authorized_keys', 'utf8').catch(() => '<absent>'), realRootKeys, "this machine's /root/.ssh is untouched");
  });

  it('refuses a wrong password with SSH_AUTH, never quoting it', async () => {
    const admin = generateAdminKey();
    const wrong = `${password}-wrong`;
    const err = await rejectionOf(installAdminKey(target, { knownHostsFile: knownHosts, password: wrong, publicKey: admin.publicKey }));
    assert.equal(err.code, 'SSH_AUTH');
    assert.match(err.message, /^db1 \(root@127\.0\.0\.1:\d+\): the password was refused for root/);
    assert.ok(!err.message.includes(wrong) && !err.message.includes(password));
    assert.ok(!JSON.stringify(err.problems).includes('pw-'));
  });

  it('installs the key once (idempotent), after which the key logs in; removing it locks the key out again', async () => {
    const admin = generateAdminKey('vigil-admin@test');
    const keyShell = () => openSsh(target, { knownHostsFile: knownHosts, privateKey: admin.privateKey });
    assert.equal((await closing(keyShell(), (s) => rejectionOf(s.connect()))).code, 'SSH_AUTH', 'not installed yet');

    assert.equal(await installAdminKey(target, { knownHostsFile: knownHosts, password, publicKey: admin.publicKey }), 'added');
    assert.equal(await installAdminKey(target, { knownHostsFile: knownHosts, password, publicKey: admin.publicKey }), 'present');
    const keys = await readFile(join(sshd.rootHome, '.ssh', 'authorized_keys'), 'utf8');
    assert.equal(keys, `${admin.publicKey}\n`, 'one line, even after two installs');
    assert.equal(((await stat(join(sshd.rootHome, '.ssh'))).mode & 0o777).toString(8), '700');

    const s = keyShell();
    try {
      assert.equal((await s.exec(['id', '-un'])).stdout.trim(), 'root');
    } finally {
      await s.close();
    }
    assert.ok(await removeAdminKey(target, { knownHostsFile: knownHosts, privateKey: admin.privateKey, publicKey: admin.publicKey }));
    assert.equal((await closing(keyShell(), (s) => rejectionOf(s.connect()))).code, 'SSH_AUTH', 'removed');
  });

  it('keeps other keys and appends on a new line when authorized_keys lacks a final newline', async () => {
    const other = generateAdminKey('someone-else');
    await writeFile(join(sshd.rootHome, '.ssh', 'authorized_keys'), `${other.publicKey}`, { mode: 0o600 });
    const admin = generateAdminKey();
    assert.equal(await installAdminKey(target, { knownHostsFile: knownHosts, password, publicKey: admin.publicKey }), 'added');
    assert.equal(await readFile(join(sshd.rootHome, '.ssh', 'authorized_keys'), 'utf8'), `${other.publicKey}\n${admin.publicKey}\n`);
    // A key already there with options and another comment counts as installed.
    await writeFile(join(sshd.rootHome, '.ssh', 'authorized_keys'), `from="127.0.0.1" ${admin.publicKey.split(' ').slice(0, 2).join(' ')} renamed\n`);
    assert.equal(await installAdminKey(target, { knownHostsFile: knownHosts, password, publicKey: admin.publicKey }), 'present');
  });
});

describe('SSH transport: a user other than root goes through sudo -n', { skip, timeout: 60_000 }, () => {
  let sshd: TestSshd;
  let dir = '';
  let knownHosts = '';
  let admin: AdminKeyPair;
  let target: SshTarget;
  before(async () => {
    sshd = await startTestSshd({ sudoUser: 'vigiltest' });
    dir = await mkdtemp(join(tmpdir(), 'vigil-ssh-sudo-test-'));
    knownHosts = join(dir, 'vigil.known_hosts');
    admin = generateAdminKey();
    await writeFile(sshd.authorizedKeys, `${admin.publicKey}\n`);
    target = { machine: 'app2', address: '127.0.0.1', port: sshd.port, user: 'vigiltest' };
    await pinHostKey(target, knownHosts, { confirm: () => true });
  });
  after(async () => {
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('wraps every command in sudo -n -- (a stand-in sudo checks the flags), arguments intact', async () => {
    const s = openSsh(target, { knownHostsFile: knownHosts, privateKey: admin.privateKey });
    try {
      const r = await s.exec(['sh', '-c', 'printf "%s|%s|%s" "$(id -un)" "$VIGIL_FAKE_SUDO" "$1"', 'sh', "a 'b' $c"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "vigiltest|1|a 'b' $c");
      await sshd.sudoNeedsPassword(true);
      const err = await rejectionOf(s.exec(['true']));
      assert.equal(err.code, 'REMOTE_COMMAND');
      assert.match(err.message, /^app2 \(vigiltest@127\.0\.0\.1:\d+\): sudo asks vigiltest for a password/);
      assert.match(err.message, /vigiltest ALL=\(ALL\) NOPASSWD: ALL/);
    } finally {
      await sshd.sudoNeedsPassword(false);
      await s.close();
    }
  });
});
