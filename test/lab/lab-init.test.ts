/**
 * The service manager of bare lab machines (src/lab/init): `systemctl`, run inside a machine as
 * `vigil apply` and the node agent run it, starts, stops, restarts and reloads units the way
 * systemd does, runs them as their User= with their RuntimeDirectory=, and starts the enabled
 * ones again when the machine comes back from a crash. Lab 7 of its own (VIGIL_LAB_ID), so it
 * never meets another lab test's machines.
 */
process.env.VIGIL_LAB_ID = '7'; // before any lab module reads it: they are imported below, dynamically

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import type { ExecResult } from '../../src/remote/types.ts';

const { labDown, labKill, labRevive, labStart, labStatus } = await import('../../src/lab/lab.ts');
const { labUpBare } = await import('../../src/lab/bare.ts');
const { hostPathOf, LAB_ID } = await import('../../src/lab/paths.ts');
const { LabShell } = await import('../../src/remote/lab.ts');
const { listProcesses } = await import('../../src/lab/procs.ts');
const { run, sleep, waitFor } = await import('../../src/util/exec.ts');

const HOST = 'app1';
const shell = new LabShell(HOST);
const systemctl = (...args: string[]): Promise<ExecResult> => shell.exec(['systemctl', ...args], { timeoutMs: 60_000 });
const mainPid = async (unit: string) => Number((await systemctl('show', '-p', 'MainPID', '--value', unit)).stdout.trim());
const alive = (pid: number) => readFile(`/proc/${pid}/stat`, 'utf8').then((s) => !/^\d+ \(.*\) Z/.test(s), () => false);

/** Writes a unit into the machine's own /etc/systemd/system and tells the manager. */
async function unit(name: string, service: string[], install = false): Promise<void> {
  const text = ['[Unit]', `Description=lab-init test ${name}`, '', '[Service]', ...service, ...(install ? ['', '[Install]', 'WantedBy=multi-user.target'] : []), ''].join('\n');
  await shell.writeFile(`/etc/systemd/system/${name}.service`, text);
  assert.equal((await systemctl('daemon-reload')).code, 0);
}

/** sshd answers with its banner on the machine's port 22. */
async function sshAnswers(address: string): Promise<boolean> {
  const r = await run('timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${address}/22; head -c 4 <&3`], { allowFail: true });
  return r.stdout.startsWith('SSH-');
}

describe('the service manager of bare lab machines', () => {
  let address: string;

  before(async () => {
    assert.equal(LAB_ID, 7);
    await labDown();
    await labUpBare({ topology: 'pair' }, (l) => console.log(`# lab: ${l}`));
    address = `10.213.${LAB_ID}.11`;
  });
  after(async () => labDown());

  it('runs sshd as ssh.service, enabled, with the manager classified as another process', async () => {
    const active = await systemctl('is-active', 'ssh');
    assert.equal(active.code, 0);
    assert.equal(active.stdout, 'active\n');
    assert.equal((await systemctl('is-enabled', 'ssh.service')).stdout, 'enabled\n');
    assert.equal((await systemctl('is-active', 'sshd')).stdout, 'active\n', 'sshd.service is an alias, as on Debian');
    const status = await systemctl('status', 'ssh');
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Active: active \(running\)/);
    assert.match(status.stdout, /Main PID: \d+ \(sshd\)/);
    const procs = await listProcesses(HOST);
    assert.deepEqual(procs.map((p) => p.name).sort(), ['other', 'sshd'], 'the manager (other) and sshd');
    assert.ok(await sshAnswers(address));
    // `vigil lab start` on a unit that runs already changes nothing.
    await labStart(HOST, 'sshd');
  });

  it('sshd reads the drop-ins before the lab config: a drop-in wins', async () => {
    await shell.writeFile('/etc/ssh/sshd_config.d/50-test.conf', 'AuthorizedKeysFile .ssh/authorized_keys /etc/vigil/test_keys\n');
    try {
      const t = await shell.exec(['/usr/sbin/sshd', '-T', '-f', '/etc/vigil/ssh/sshd_config', '-C', 'user=root,host=x,addr=10.0.0.1']);
      assert.equal(t.code, 0, t.stderr);
      assert.match(t.stdout, /^authorizedkeysfile \.ssh\/authorized_keys \/etc\/vigil\/test_keys$/m);
    } finally {
      await shell.exec(['rm', '-f', '/etc/ssh/sshd_config.d/50-test.conf']);
    }
    assert.equal(await stat('/etc/ssh/sshd_config.d/50-test.conf').catch(() => null), null, "this host's own drop-ins are untouched");
  });

  it('start, is-active, stop: a unit with systemd quoting, its output in its log', async () => {
    await unit('lab-sleep', ['Type=exec', `ExecStart=/bin/sh -c "echo \\"started 100%% as $$0\\"; exec sleep 1000"`]);
    const started = await systemctl('start', 'lab-sleep');
    assert.equal(started.code, 0, started.stderr);
    assert.equal((await systemctl('is-active', '--quiet', 'lab-sleep')).code, 0);
    const pid = await mainPid('lab-sleep');
    await waitFor('sleep to run', async () => ((await readFile(`/proc/${pid}/cmdline`, 'utf8')).startsWith('sleep\u00001000') ? true : undefined), 5000, 50);
    assert.match(await readFile(hostPathOf(HOST, '/var/log/vigil/lab-sleep.log'), 'utf8'), /started 100% as \/bin\/sh/);
    const stopped = await systemctl('stop', 'lab-sleep');
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(await alive(pid), false, 'the stop answers once the process is gone');
    const inactive = await systemctl('is-active', 'lab-sleep');
    assert.equal(inactive.code, 3);
    assert.equal(inactive.stdout, 'inactive\n');
  });

  it('Restart=always brings a SIGKILLed main process back', async () => {
    await unit('lab-always', ['ExecStart=/bin/sleep 1000', 'Restart=always', 'RestartSec=100ms']);
    assert.equal((await systemctl('start', 'lab-always')).code, 0);
    const first = await mainPid('lab-always');
    process.kill(first, 'SIGKILL');
    const second = await waitFor('a new main process', async () => {
      const p = await mainPid('lab-always');
      return p !== 0 && p !== first ? p : undefined;
    }, 5000, 50);
    assert.ok(await alive(second));
    assert.equal((await systemctl('show', '-p', 'NRestarts', '--value', 'lab-always')).stdout, '1\n');
    assert.equal((await systemctl('stop', 'lab-always')).code, 0);
    await sleep(300);
    assert.equal((await systemctl('is-active', 'lab-always')).stdout, 'inactive\n', 'a stop is not restarted');
  });

  it('a failing ExecStartPre fails the start (exit 1, the log named) and leaves the unit failed', async () => {
    await unit('lab-pre', ['Type=exec', 'ExecStartPre=-/bin/false', 'ExecStartPre=/bin/sh -c "echo checking; exit 3"', 'ExecStart=/bin/sleep 1000']);
    const r = await systemctl('start', 'lab-pre');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Job for lab-pre\.service failed because the control process exited with error code\.$/m);
    assert.match(r.stderr, /\/var\/log\/vigil\/lab-pre\.log/);
    const state = await systemctl('is-active', 'lab-pre');
    assert.equal(state.code, 3);
    assert.equal(state.stdout, 'failed\n');
    assert.equal((await systemctl('is-failed', '--quiet', 'lab-pre')).code, 0);
    assert.equal((await mainPid('lab-pre')), 0, 'ExecStart never ran');
    assert.match(await readFile(hostPathOf(HOST, '/var/log/vigil/lab-pre.log'), 'utf8'), /checking/);
  });

  it('User= runs the process as that user, in a RuntimeDirectory= it owns', async () => {
    await unit('lab-user', ['Type=exec', 'User=nobody', 'Group=nogroup', 'RuntimeDirectory=vigil/lab-user', 'RuntimeDirectoryMode=0750', 'ExecStart=/bin/sleep 1000']);
    const r = await systemctl('start', 'lab-user');
    assert.equal(r.code, 0, r.stderr);
    const pid = await mainPid('lab-user');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    const dir = await stat(hostPathOf(HOST, '/run/vigil/lab-user'));
    assert.equal(dir.uid, 65534);
    assert.equal(dir.mode & 0o777, 0o750);
    assert.equal((await systemctl('stop', 'lab-user')).code, 0);
    assert.equal(await stat(hostPathOf(HOST, '/run/vigil/lab-user')).catch(() => null), null, 'removed when the unit stops');
  });

  it('kill --signal=SIGKILL ends a SIGSTOPped main process and Restart=on-failure starts it again (the db fence)', async () => {
    await unit('lab-killed', ['Type=exec', 'ExecStart=/bin/sleep 1000', 'Restart=on-failure', 'RestartSec=100ms']);
    assert.equal((await systemctl('start', 'lab-killed')).code, 0);
    const first = await mainPid('lab-killed');
    process.kill(first, 'SIGSTOP');
    assert.equal((await systemctl('kill', '--signal=SIGKILL', 'lab-killed')).code, 0);
    const second = await waitFor('a new main process', async () => {
      const p = await mainPid('lab-killed');
      return p !== 0 && p !== first ? p : undefined;
    }, 5000, 50);
    assert.equal(await alive(first), false);
    assert.ok(await alive(second));
    const bad = await systemctl('kill', '--signal=SIGNOPE', 'lab-killed');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Failed to parse signal string SIGNOPE/);
    assert.equal((await systemctl('stop', 'lab-killed')).code, 0);
    const idle = await systemctl('kill', '--signal=SIGKILL', 'lab-killed');
    assert.equal(idle.code, 1, 'nothing to signal in a stopped unit');
  });

  it('stop ends a SIGSTOPped process with its KillSignal (SIGCONT follows), not after the timeout', async () => {
    await unit('lab-stopped', ['Type=exec', 'ExecStart=/bin/sleep 1000', 'TimeoutStopSec=30']);
    assert.equal((await systemctl('start', 'lab-stopped')).code, 0);
    const pid = await mainPid('lab-stopped');
    process.kill(pid, 'SIGSTOP');
    const t0 = performance.now();
    assert.equal((await systemctl('stop', 'lab-stopped')).code, 0);
    assert.ok(performance.now() - t0 < 5000, `stopped in ${Math.round(performance.now() - t0)} ms`);
    assert.equal(await alive(pid), false);
    assert.equal((await systemctl('is-active', 'lab-stopped')).stdout, 'inactive\n');
  });

  it('systemctl reload ssh keeps sshd and its pid', async () => {
    const before = await mainPid('ssh');
    const r = await systemctl('reload', 'ssh');
    assert.equal(r.code, 0, r.stderr);
    await sleep(300);
    assert.equal(await mainPid('ssh'), before);
    assert.equal((await readFile(`/proc/${before}/comm`, 'utf8')).trim(), 'sshd');
    assert.ok(await sshAnswers(address));
    const none = await systemctl('reload', 'lab-sleep');
    assert.equal(none.code, 1, 'an inactive unit cannot be reloaded');
    assert.match(none.stderr, /lab-sleep\.service is not active, cannot reload\./);
  });

  it('an unknown unit: not found (5), inactive (3), no unit file state (1)', async () => {
    const start = await systemctl('start', 'no-such-unit');
    assert.equal(start.code, 5);
    assert.equal(start.stderr, 'Failed to start no-such-unit.service: Unit no-such-unit.service not found.\n');
    const active = await systemctl('is-active', 'no-such-unit');
    assert.equal(active.code, 3);
    assert.equal(active.stdout, 'inactive\n');
    const enabled = await systemctl('is-enabled', 'no-such-unit');
    assert.equal(enabled.code, 1);
    assert.equal(enabled.stderr, 'Failed to get unit file state for no-such-unit.service: No such file or directory\n');
    assert.equal((await systemctl('list-units')).code, 1);
    await assert.rejects(labStart(HOST, 'etcd'), /vigil-etcd\.service/);
  });

  it('an enabled unit runs again after the machine is killed and revived; so does ssh', async () => {
    await unit('lab-boot', ['Type=exec', 'ExecStart=/bin/sleep 1000', 'RuntimeDirectory=vigil/lab-boot'], true);
    const r = await systemctl('enable', '--now', 'lab-boot');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Created symlink \/etc\/systemd\/system\/multi-user\.target\.wants\/lab-boot\.service/);
    assert.equal((await systemctl('is-enabled', 'lab-boot')).stdout, 'enabled\n');
    const before = await mainPid('lab-boot');
    assert.ok(before > 0);
    await labKill(HOST);
    assert.equal(await alive(before), false);
    assert.deepEqual((await labStatus()).find((m) => m.name === HOST)?.processes, {});
    await labRevive(HOST);
    const after = await waitFor('lab-boot to run again', async () => ((await systemctl('is-active', 'lab-boot')).code === 0 ? mainPid('lab-boot') : undefined), 10_000, 100);
    assert.notEqual(after, before);
    await waitFor('ssh to answer', async () => ((await sshAnswers(address)) ? true : undefined), 10_000, 100);
    assert.equal((await systemctl('is-active', 'lab-sleep')).stdout, 'inactive\n', 'a unit that is not enabled stays down');
    const d = await systemctl('disable', '--now', 'lab-boot');
    assert.equal(d.code, 0, d.stderr);
    assert.equal((await systemctl('is-enabled', 'lab-boot')).stdout, 'disabled\n');
    assert.equal((await systemctl('is-active', 'lab-boot')).code, 3);
  });
});
