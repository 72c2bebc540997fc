import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { clusterFixture, runTool, secretsFixture, tempDir } from './fixtures.ts';
import { renderAll } from './index.ts';
import { COMMANDS, renderUnits } from './systemd.ts';

const unitsOf = (topology: 'pair' | 'distributed') => renderAll(clusterFixture(topology), secretsFixture()).filter((f) => f.path.startsWith('/etc/systemd/system/'));

describe('systemd units', () => {
  it('gives each machine the units of its roles', () => {
    const c = clusterFixture('pair');
    const names = (m: string) => renderUnits(c, c.machines.find((x) => x.name === m)!).map((f) => basename(f.path));
    assert.deepEqual(names('observer'), ['vigil-etcd.service', 'vigil-haproxy.service']);
    assert.deepEqual(names('app1'), ['vigil-patroni.service', 'vigil-nginx.service']);
  });

  it('runs Patroni as postgres, stopping only Patroni itself', () => {
    const patroni = unitsOf('distributed').find((f) => f.path.endsWith('vigil-patroni.service'))!.content;
    assert.match(patroni, /^User=postgres$/m);
    assert.match(patroni, /^KillMode=process$/m);
    assert.match(patroni, /^TimeoutSec=60$/m);
    assert.match(patroni, /^ExecStart=\/usr\/bin\/patroni \/etc\/vigil\/patroni\.yml$/m);
  });

  it('runs HAProxy in master-worker mode with sd_notify and a checked reload', () => {
    const haproxy = unitsOf('distributed').find((f) => f.path.endsWith('vigil-haproxy.service'))!.content;
    assert.match(haproxy, /^Type=notify$/m);
    assert.match(haproxy, /^ExecStart=\/usr\/sbin\/haproxy -Ws -f \/etc\/vigil\/haproxy\.cfg$/m);
    assert.match(haproxy, /^ExecReload=\/usr\/sbin\/haproxy -c -q -f \/etc\/vigil\/haproxy\.cfg$/m);
  });

  it('never starts nginx at boot (the agent decides) and quotes its -g argument', () => {
    const nginx = unitsOf('distributed').find((f) => f.path.endsWith('vigil-nginx.service'))!.content;
    assert.doesNotMatch(nginx, /\[Install\]/);
    assert.match(nginx, /-g "daemon off;"$/m);
    assert.deepEqual(COMMANDS.nginx.slice(-2), ['-g', 'daemon off;']);
  });

  it('holds no secret', () => {
    for (const f of [...unitsOf('pair'), ...unitsOf('distributed')]) {
      for (const s of Object.values(secretsFixture())) assert.ok(!f.content.includes(s), f.path);
    }
  });

  it('passes systemd-analyze verify', { timeout: 60_000 }, async () => {
    const dir = await tempDir('vigil-units-');
    try {
      const units = new Map(unitsOf('distributed').map((f) => [basename(f.path), f.content]));
      assert.equal(units.size, 4);
      const files: string[] = [];
      for (const [name, content] of units) {
        const file = join(dir, name);
        await writeFile(file, content);
        files.push(file);
      }
      const r = await runTool('systemd-analyze', ['verify', '--man=no', ...files], { cwd: dir });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      // verify only warns about unknown settings and bad values; any output about our units is a defect.
      const ours = (r.stdout + r.stderr).split('\n').filter((l) => l.includes('vigil-'));
      assert.deepEqual(ours, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
