/**
 * The entry-point check (checks/entry.ts) on constructed facts: two proxy machines sharing a
 * floating address through keepalived. Exactly one holds it, both run keepalived with the
 * rendered config; each departure from that is one finding that names the machines and no secret.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Cluster, Secrets } from '../config/schema.ts';
import { summarizeKeepalived } from '../facts/keepalived.ts';
import { clusterFixture, secretsFixture } from '../testing/clusters.ts';
import { fixtureContext, fixturePki, healthyFacts, renderedOf, type FixturePki } from '../testing/doctor-facts.ts';
import { buildReport, evaluate } from './evaluate.ts';
import { formatReport } from './format.ts';
import { got, type Facts, type Finding } from './types.ts';

const VIP = '10.0.0.100';
let cluster: Cluster;
let secrets: Secrets;
let pki: FixturePki;

before(async () => {
  cluster = clusterFixture('distributed', { proxy: { virtualAddress: VIP } });
  cluster.machines[0]!.roles = ['etcd', 'observer'];
  cluster.machines.push({ name: 'proxy1', address: '10.0.0.41', roles: ['proxy'], sshUser: 'root', sshPort: 22 });
  cluster.machines.push({ name: 'proxy2', address: '10.0.0.42', roles: ['proxy'], sshUser: 'root', sshPort: 22 });
  secrets = { ...secretsFixture(), vrrpPassword: 'vrrp-Secret-1234' };
  pki = await fixturePki(cluster);
});

/** Healthy facts with keepalived on both proxies as rendered, `holders` holding the address. */
function facts(holders: string[] = ['proxy1'], edit: (name: string, conf: string) => string = (_n, c) => c): Facts {
  const rendered = renderedOf(cluster, secrets);
  const f = structuredClone(healthyFacts(cluster, rendered, pki));
  for (const m of f.machines.filter((x) => x.roles.includes('proxy'))) {
    const want = rendered.get(m.name)!.find((x) => x.path === '/etc/vigil/keepalived.conf')!.content;
    const conf = edit(m.name, want);
    m.entryPoint = {
      holds: got(holders.includes(m.name)),
      unit: got('active'),
      config: got({ valid: true, output: '' }),
      file: got({ asRendered: conf === want, summary: summarizeKeepalived(conf) }),
    };
  }
  return f;
}

const entryFindings = (f: Facts): Finding[] => evaluate(fixtureContext(cluster, secrets, f)).findings.filter((x) => x.check === 'entry-point');

describe('doctor: the floating entry address', () => {
  test('one holder, keepalived as rendered on both: no finding, and the report names the holder', () => {
    assert.deepEqual(entryFindings(facts()), []);
    const ctx = fixtureContext(cluster, secrets, facts(['proxy2']));
    const report = buildReport(ctx, evaluate(ctx), { startedAt: new Date(), durationMs: 1 });
    assert.deepEqual(report.entryPoint, { address: VIP, holders: ['proxy2'] });
    assert.match(formatReport(report), /^entry address 10\.0\.0\.100: held by proxy2$/m);
    for (const p of ['proxy1', 'proxy2'])
      assert.ok(report.machines.find((m) => m.name === p)!.checks.some((c) => c.check === 'entry-point' && c.status === 'ok'));
  });

  test('two holders at once: one failure naming both and VRRP', () => {
    const [f] = entryFindings(facts(['proxy1', 'proxy2']));
    assert.ok(f);
    assert.equal(f.machine, null);
    assert.match(f.what, /held by proxy1 and proxy2 at once/);
    assert.match(f.why + f.fix, /112/);
  });

  test('no holder: a failure', () => {
    const list = entryFindings(facts([]));
    assert.equal(list.length, 1);
    assert.match(list[0]!.what, /no proxy machine holds the entry address 10\.0\.0\.100/);
  });

  test('configured differently: the differing settings are named, the password never', () => {
    const list = entryFindings(
      facts(['proxy1'], (name, c) =>
        name === 'proxy2' ? c.replace('virtual_router_id 51', 'virtual_router_id 52').replace(/auth_pass \S+/, 'auth_pass other123') : c,
      ),
    );
    const alike = list.find((x) => x.machine === null);
    assert.ok(alike, JSON.stringify(list));
    assert.match(alike.what, /virtual_router_id proxy1: 51, proxy2: 52/);
    assert.match(alike.what, /auth_pass differs/);
    assert.ok(list.some((x) => x.machine === 'proxy2' && /not the one `vigil render` gives it/.test(x.what)));
    const text = JSON.stringify(list);
    for (const s of [secrets.vrrpPassword!, secrets.vrrpPassword!.slice(0, 8), 'other123']) assert.ok(!text.includes(s), 'no password in a finding');
  });

  test('keepalived stopped or its config refused on one machine', () => {
    const f = facts();
    const p2 = f.machines.find((m) => m.name === 'proxy2')!.entryPoint!;
    p2.unit = got('inactive');
    p2.config = got({ valid: false, output: '(/etc/vigil/keepalived.conf: Line 3) Unknown keyword' });
    const list = entryFindings(f).filter((x) => x.machine === 'proxy2');
    assert.equal(list.length, 2, JSON.stringify(list));
    assert.ok(list.some((x) => /keepalived does not run on proxy2/.test(x.what)));
    assert.ok(list.some((x) => /does not pass `keepalived --config-test`/.test(x.what)));
  });

  test('unicast peers that are not the other proxy machines', () => {
    const list = entryFindings(facts(['proxy1'], (name, c) => (name === 'proxy1' ? c.replace('10.0.0.42', '10.0.0.99') : c)));
    assert.ok(list.some((x) => x.machine === 'proxy1' && /sends VRRP to 10\.0\.0\.99, not to the other proxy machines \(10\.0\.0\.42\)/.test(x.what)));
  });

  test('without proxy.virtualAddress the check does not run', () => {
    const plain = clusterFixture('distributed');
    const ctx = fixtureContext(plain, secretsFixture(), structuredClone(healthyFacts(plain, renderedOf(plain, secretsFixture()), pki)));
    const report = buildReport(ctx, evaluate(ctx), { startedAt: new Date(), durationMs: 1 });
    assert.equal(report.entryPoint, undefined);
    assert.ok(!report.findings.some((x) => x.check === 'entry-point'));
  });
});

describe('summarizeKeepalived', () => {
  test('reads the rendered file: the group settings, the peers and a digest of the password', () => {
    const conf = renderedOf(cluster, secrets)
      .get('proxy2')!
      .find((x) => x.path === '/etc/vigil/keepalived.conf')!.content;
    const s = summarizeKeepalived(conf);
    assert.deepEqual(
      { ...s, authDigest: typeof s.authDigest },
      {
        interface: 'eth0',
        routerId: '51',
        advertInt: '1',
        authType: 'PASS',
        authDigest: 'string',
        virtualAddresses: [`${VIP}/32`],
        unicastSrc: '10.0.0.42',
        peers: ['10.0.0.41'],
        trackScripts: ['vigil_haproxy'],
        nopreempt: true,
      },
    );
    assert.ok(!JSON.stringify(s).includes('vrrp-Sec'));
  });
});
