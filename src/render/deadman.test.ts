import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootClockCs } from '../util/boot-clock.ts';
import { clusterFixture } from '../testing/clusters.ts';
import { waitFor, sleep } from '../util/exec.ts';
import { deadmanCommand, deadmanScript } from './deadman.ts';

/**
 * The switch's own logic, run by a real /bin/sh against a stamp file; `systemctl` is a script
 * that writes down what it was asked (systemd's stopping itself is the lab's to show:
 * test/lab/app-failover.test.ts, "the agent hangs").
 */
async function withSwitch(stampValue: string, body: (calls: () => Promise<string[]>) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-deadman-'));
  const stamp = join(dir, 'serve-until');
  const log = join(dir, 'calls');
  await writeFile(join(dir, 'deadman.sh'), deadmanScript(stamp));
  await writeFile(join(dir, 'systemctl'), `#!/bin/sh\necho "$*" >> '${log}'\n`);
  await chmod(join(dir, 'systemctl'), 0o755);
  await writeFile(log, '');
  await writeFile(stamp, stampValue);
  const child = spawn('/bin/sh', [join(dir, 'deadman.sh'), 'vigil-refapp.service', 'vigil-nginx.service'], {
    env: { PATH: `${dir}:/usr/bin:/bin` },
    stdio: 'ignore',
  });
  try {
    await body(async () => (await readFile(log, 'utf8')).split('\n').filter(Boolean));
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

const uptimeCs = async () => bootClockCs(await readFile('/proc/uptime', 'utf8'));

test('the dead-man switch stops the units, in the order given, once the stamp has passed, and only once', async () => {
  await withSwitch(String((await uptimeCs()) - 1), async (calls) => {
    await waitFor('the units stopped', async () => ((await calls()).length >= 2 ? true : undefined), 10_000, 50);
    await sleep(1500); // three more looks at the same stamp
    assert.deepEqual(await calls(), ['stop vigil-refapp.service', 'stop vigil-nginx.service']);
  });
});

test('the dead-man switch leaves the units alone while the lease holds, when the machine does not serve, and on a stamp it cannot read', async () => {
  for (const value of [String((await uptimeCs()) + 100_000), '0', 'garbage', '']) {
    await withSwitch(value, async (calls) => {
      await sleep(1200);
      assert.deepEqual(await calls(), [], `stamp ${JSON.stringify(value)}`);
    });
  }
});

test('the boot clock is read as the switch reads it, in centiseconds', () => {
  assert.equal(bootClockCs('40246.14 47979.77\n'), 4024614);
  assert.equal(bootClockCs('5.07 1.00\n'), 507);
  assert.throws(() => bootClockCs('nonsense'), /unexpected \/proc\/uptime/);
});

test('the switch gets the units in stop order: the reverse of the cluster file', () => {
  const cmd = deadmanCommand(clusterFixture('pair'));
  assert.deepEqual(cmd.slice(2), ['vigil-refapp.service', 'vigil-nginx.service']);
});
