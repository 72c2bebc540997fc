import assert from 'node:assert/strict';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Cluster, Secrets } from '../config/schema.ts';
import { entryAddress, withRole } from '../config/schema.ts';
import { VigilError } from '../util/errors.ts';
import { clusterFixture, freePort, relocate, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';
import { renderAll, renderMachine } from './index.ts';
import { VRRP_CHECK, keepalivedCheckScript, keepalivedConfig, renderKeepalived, runsKeepalived, vrrpPriority } from './keepalived.ts';
import { keepalivedUnit } from './systemd.ts';

const VRRP_PASSWORD = 'vrrp-Secret-1234';

/** `distributed` with HAProxy on two machines of their own (the lab's --proxies 2) and a floating address. */
function twoProxies(proxy: Partial<Cluster['proxy']> = { virtualAddress: '10.0.0.100' }): Cluster {
  const c = clusterFixture('distributed', { proxy });
  c.machines[0]!.roles = ['etcd', 'observer'];
  c.machines.push({ name: 'proxy1', address: '10.0.0.41', roles: ['proxy'], sshUser: 'root', sshPort: 22 });
  c.machines.push({ name: 'proxy2', address: '10.0.0.42', roles: ['proxy'], sshUser: 'root', sshPort: 22 });
  return c;
}

const secrets = (): Secrets => ({ ...secretsFixture(), vrrpPassword: VRRP_PASSWORD });

/** The lines of a block that starts with `head {` (first match), trimmed, without its braces. */
function blockOf(cfg: string, head: string): string[] {
  const lines = cfg.split('\n');
  const start = lines.findIndex((l) => l.trim() === `${head} {`);
  assert.ok(start >= 0, `block ${head} missing`);
  const out: string[] = [];
  let depth = 0;
  for (const l of lines.slice(start + 1)) {
    if (l.trim() === '}' && depth === 0) break;
    if (l.trim().endsWith('{')) depth++;
    if (l.trim() === '}') depth--;
    out.push(l.trim());
  }
  return out;
}

describe('keepalived.conf', () => {
  it('every proxy machine: the same router id, address, password and check; unicast to the other proxies; distinct priorities', () => {
    const c = twoProxies();
    const proxies = withRole(c, 'proxy');
    const cfgs = proxies.map((p) => keepalivedConfig(c, secrets(), p));
    for (const [i, p] of proxies.entries()) {
      const inst = blockOf(cfgs[i]!, 'vrrp_instance vigil_entry');
      assert.ok(inst.includes('state BACKUP') && inst.includes('nopreempt'), 'no preemption: a returning proxy does not take the address back');
      assert.ok(inst.includes('interface eth0'));
      assert.ok(inst.includes('virtual_router_id 51'));
      assert.ok(inst.includes(`priority ${vrrpPriority(i)}`));
      assert.ok(inst.includes(`unicast_src_ip ${p.address}`));
      assert.deepEqual(
        blockOf(cfgs[i]!, 'unicast_peer'),
        proxies.filter((o) => o.name !== p.name).map((o) => o.address),
      );
      assert.deepEqual(blockOf(cfgs[i]!, 'authentication'), ['auth_type PASS', `auth_pass ${VRRP_PASSWORD.slice(0, 8)}`]);
      assert.deepEqual(blockOf(cfgs[i]!, 'virtual_ipaddress'), ['10.0.0.100/32 dev eth0']);
      assert.deepEqual(blockOf(cfgs[i]!, 'track_script'), [VRRP_CHECK], 'the address follows HAProxy, not only the machine');
      assert.ok(!cfgs[i]!.includes(VRRP_PASSWORD), 'only the 8 characters VRRP carries');
    }
    assert.notEqual(vrrpPriority(0), vrrpPriority(1));
  });

  it('follows proxy.vrrp', () => {
    const c = twoProxies({ virtualAddress: '192.168.5.9', vrrp: { interface: 'ens18', routerId: 7, advertIntervalSeconds: 2 } });
    const inst = blockOf(keepalivedConfig(c, secrets(), withRole(c, 'proxy')[1]!), 'vrrp_instance vigil_entry');
    for (const l of ['interface ens18', 'virtual_router_id 7', 'advert_int 2', 'priority 140']) assert.ok(inst.includes(l), l);
  });

  it('only with proxy.virtualAddress, on proxy machines only; the config is mode 600, the unit is installed', () => {
    const without = twoProxies({});
    assert.equal(entryAddress(without), '10.0.0.41', 'without a floating address the first proxy machine is the entry point');
    assert.ok(!renderAll(without, secretsFixture()).some((f) => f.path.includes('keepalived')));
    const c = twoProxies();
    assert.equal(entryAddress(c), '10.0.0.100');
    for (const m of c.machines) {
      const files = renderMachine(c, secrets(), m.name);
      const has = files.some((f) => f.path === '/etc/vigil/keepalived.conf');
      assert.equal(has, m.roles.includes('proxy'), m.name);
      assert.equal(runsKeepalived(c, m), has);
      assert.equal(
        files.some((f) => f.path.endsWith('/vigil-keepalived.service')),
        has,
      );
    }
    const [conf, script] = renderKeepalived(c, secrets(), withRole(c, 'proxy')[0]!);
    assert.equal(conf!.mode, 0o600);
    assert.equal(script!.mode, 0o755);
  });

  it('a floating address without vrrpPassword is a secrets error that quotes no secret', () => {
    const c = twoProxies();
    assert.throws(
      () => renderMachine(c, secretsFixture(), 'proxy1'),
      (err: unknown) => {
        assert.ok(err instanceof VigilError && err.code === 'SECRETS_INVALID');
        const text = err.message + JSON.stringify(err.problems);
        assert.match(text, /vrrpPassword/);
        for (const s of Object.values(secretsFixture()).filter((v) => typeof v === 'string')) assert.ok(!text.includes(s));
        return true;
      },
    );
  });

  it('the unit checks the config before every start and reload, and runs VRRP only', () => {
    const u = keepalivedUnit();
    assert.ok(u.includes('ExecStartPre=/usr/sbin/keepalived --config-test --use-file /etc/vigil/keepalived.conf'));
    assert.ok(u.includes('ExecReload=/usr/sbin/keepalived --config-test --use-file /etc/vigil/keepalived.conf'));
    assert.match(u, /^ExecStart=\/usr\/sbin\/keepalived --dont-fork --vrrp /m);
    assert.ok(!u.includes(VRRP_PASSWORD.slice(0, 8)), 'no secret on a command line');
  });
});

describe('keepalived --config-test (keepalived 2.2)', () => {
  async function configTest(content: string, dir: string): Promise<{ code: number | null; out: string }> {
    await mkdir(join(dir, 'etc/vigil'), { recursive: true });
    // keepalived's script security: the check must exist and be writable by root only.
    await writeFile(join(dir, 'etc/vigil/keepalived-check.sh'), '#!/bin/sh\nexit 0\n');
    await chmod(join(dir, 'etc/vigil/keepalived-check.sh'), 0o755);
    const file = join(dir, 'keepalived.conf');
    await writeFile(file, relocate(content, dir), { mode: 0o600 });
    const r = await runTool('keepalived', ['--config-test', '--use-file', file]);
    return { code: r.code, out: r.stdout + r.stderr };
  }

  it('accepts every proxy machine’s config, and refuses a broken one', async () => {
    const dir = await tempDir('vigil-keepalived-');
    try {
      const c = twoProxies();
      for (const p of withRole(c, 'proxy')) {
        const r = await configTest(keepalivedConfig(c, secrets(), p), dir);
        assert.equal(r.code, 0, r.out);
        assert.doesNotMatch(r.out, /warning|unknown|error/i, 'nothing keepalived has to guess at');
      }
      const broken = await configTest(keepalivedConfig(c, secrets(), withRole(c, 'proxy')[0]!).replace('virtual_router_id 51', 'virtual_router_id 300'), dir);
      assert.notEqual(broken.code, 0, `a router id out of range must fail the test: ${broken.out}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("the track script (keepalived's check of HAProxy)", () => {
  /** Runs the rendered script against a stats port on loopback. */
  async function check(port: number): Promise<number | null> {
    const dir = await tempDir('vigil-keepalived-check-');
    try {
      const c = clusterFixture('distributed', { proxy: { statsPort: port, virtualAddress: '10.0.0.100' } });
      const script = join(dir, 'check.sh');
      await writeFile(script, keepalivedCheckScript(c), { mode: 0o755 });
      return (await runTool(script, [], { timeoutMs: 10_000 })).code;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const listen = async (server: Server | ReturnType<typeof createTcpServer>, port: number) =>
    new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));

  it('passes when HAProxy answers, fails when nothing listens and when the listener hangs', async () => {
    const port = await freePort();
    assert.notEqual(await check(port), 0, 'nothing listens (HAProxy dead)');

    const http = createServer((_req, res) => res.writeHead(200).end('stats'));
    await listen(http, port);
    try {
      assert.equal(await check(port), 0, 'HAProxy answers');
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }

    // Accepts connections and never answers: what a paused HAProxy looks like from loopback.
    const sockets: Socket[] = [];
    const hung = createTcpServer((s) => void sockets.push(s));
    await listen(hung, port);
    try {
      assert.notEqual(await check(port), 0, 'HAProxy hangs');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => hung.close(resolve));
    }

    const failing = createServer((_req, res) => res.writeHead(503).end());
    await listen(failing, port);
    try {
      assert.notEqual(await check(port), 0, 'an answer that is not 200');
    } finally {
      failing.closeAllConnections();
      await new Promise((resolve) => failing.close(resolve));
    }
  });
});
