import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { VigilError } from '../util/errors.ts';
import type { Cluster } from '../config/schema.ts';
import { renderMachine } from './index.ts';
import { patroniKeyPrefix, patroniNamespace, pgHba, renderPatroni, timerProblems } from './patroni.ts';
import { clusterFixture, freePort, loopbackAddresses, relocate, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';

const secrets = secretsFixture();
const machine = (c: Cluster, name: string) => c.machines.find((m) => m.name === name)!;
type Doc = Record<string, Record<string, unknown>>;
const doc = (c: Cluster, name = 'db1') => parse(renderPatroni(c, secrets, machine(c, name)).content, { version: '1.1' }) as Doc;
const dcs = (d: Doc) => d.bootstrap!.dcs as Record<string, unknown>;

describe('patroni timers', () => {
  it('accepts the defaults for Patroni 3.0.2', () => {
    assert.deepEqual(timerProblems(clusterFixture('distributed')), []);
  });

  it('rejects loop_wait + 2 x retry_timeout > ttl, naming the fields and the fix', () => {
    const c = clusterFixture('distributed', { timers: { ttlSeconds: 10, loopWaitSeconds: 4, retryTimeoutSeconds: 4 } });
    const problems = timerProblems(c);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!.message, /= 12 exceeds ttlSeconds = 10/);
    assert.match(problems[0]!.fix, /at least 12/);
    assert.throws(
      () => renderMachine(c, secrets, 'db1'),
      (e: unknown) => e instanceof VigilError && e.code === 'CONFIG_INVALID' && /timers/.test(e.message),
    );
  });

  it('accepts the rule at equality', () => {
    const c = clusterFixture('distributed', { timers: { ttlSeconds: 10, loopWaitSeconds: 2, retryTimeoutSeconds: 4 } });
    assert.deepEqual(timerProblems(c), []);
  });

  it('flags values Patroni 3.2+ would silently raise', () => {
    const c = clusterFixture('distributed');
    const problems = timerProblems(c, '3.2.2');
    // loop_wait 1 (Vigil's default) is Patroni 3.2+'s own floor: only ttl is raised.
    assert.deepEqual(
      problems.map((p) => p.where),
      ['<generated> timers.ttlSeconds'],
    );
    const ok = clusterFixture('distributed', { timers: { ttlSeconds: 20, loopWaitSeconds: 1, retryTimeoutSeconds: 3 } });
    assert.deepEqual(timerProblems(ok, '4.0.4'), []);
  });

  it('writes the timers into bootstrap.dcs', () => {
    const c = clusterFixture('distributed', { timers: { ttlSeconds: 16, loopWaitSeconds: 2, retryTimeoutSeconds: 5 } });
    const d = dcs(doc(c));
    assert.equal(d.ttl, 16);
    assert.equal(d.loop_wait, 2);
    assert.equal(d.retry_timeout, 5);
  });
});

describe('patroni.yml', () => {
  it('uses synchronous mode, not strict, when replication is synchronous', () => {
    const d = dcs(doc(clusterFixture('distributed')));
    assert.equal(d.synchronous_mode, true);
    assert.equal(d.synchronous_mode_strict, false);
    assert.equal(d.primary_start_timeout, 0);
  });

  it('turns on DCS failsafe mode in the dynamic configuration, not at the top level', () => {
    const d = doc(clusterFixture('distributed'));
    assert.equal(dcs(d).failsafe_mode, true);
    assert.equal((d as Record<string, unknown>).failsafe_mode, undefined);
  });

  it('turns synchronous mode off for asynchronous replication and keeps the lag bound', () => {
    const c = clusterFixture('distributed', { database: { replication: 'asynchronous', maximumLagOnFailoverBytes: 4096 } });
    const d = dcs(doc(c));
    assert.equal(d.synchronous_mode, false);
    assert.equal(d.maximum_lag_on_failover, 4096);
    assert.equal(d.primary_start_timeout, c.timers.ttlSeconds);
  });

  it('names scope, namespace, members, etcd hosts and the REST API', () => {
    const c = clusterFixture('distributed', { cluster: { name: 'prod' } });
    const d = doc(c, 'db2');
    assert.equal(d.scope as unknown, 'prod');
    assert.equal(d.namespace as unknown, '/vigil/prod/patroni/');
    assert.equal(patroniNamespace(c), '/vigil/prod/patroni/');
    assert.equal(patroniKeyPrefix(c), '/vigil/prod/patroni/prod/');
    assert.equal(d.name as unknown, 'db2');
    assert.deepEqual(d.etcd3!.hosts, ['10.0.0.10:2379']);
    // TLS with Patroni's own client certificate (etcd refuses any client without one).
    assert.equal(d.etcd3!.protocol, 'https');
    assert.equal(d.etcd3!.cacert, '/etc/vigil/pki/ca.pem');
    assert.equal(d.etcd3!.cert, '/etc/vigil/tls/patroni-etcd.pem');
    assert.equal(d.etcd3!.key, '/etc/vigil/tls/patroni-etcd.key');
    assert.equal(d.restapi!.listen, '10.0.0.22:8008');
    assert.deepEqual(d.restapi!.authentication, { username: 'vigil', password: secrets.patroniRestPassword });
    // The REST API over TLS; a write needs a client certificate from the cluster CA as well as the password.
    assert.equal(d.restapi!.certfile, '/etc/vigil/tls/patroni-rest.pem');
    assert.equal(d.restapi!.keyfile, '/etc/vigil/tls/patroni-rest.key');
    assert.equal(d.restapi!.cafile, '/etc/vigil/pki/ca.pem');
    assert.equal(d.restapi!.verify_client, 'optional');
    // Patroni's own calls to other members (and patronictl) present that certificate and trust the cluster CA only.
    assert.deepEqual(d.ctl, { certfile: '/etc/vigil/tls/patroni-rest.pem', keyfile: '/etc/vigil/tls/patroni-rest.key', cacert: '/etc/vigil/pki/ca.pem' });
    assert.equal(d.postgresql!.listen, '10.0.0.22,127.0.0.1:5432');
    assert.equal(d.postgresql!.bin_dir, '/usr/lib/postgresql/15/bin');
  });

  it('keeps every password intact through YAML (quotes, #, numbers)', () => {
    const auth = doc(clusterFixture('pair'), 'app1').postgresql!.authentication as Record<string, { username: string; password: string }>;
    assert.equal(auth.superuser!.password, secrets.postgresPassword);
    assert.equal(auth.replication!.password, secrets.replicationPassword);
    assert.equal(typeof auth.replication!.password, 'string');
    assert.equal(auth.rewind!.username, 'postgres');
  });

  it('is mode 600 and owned by postgres', () => {
    const c = clusterFixture('distributed');
    const f = renderPatroni(c, secrets, machine(c, 'db1'));
    assert.equal(f.mode, 0o600);
    assert.equal(f.owner, 'postgres:postgres');
  });

  it('pg_hba lets the app user in from every machine and replication only from db machines', () => {
    for (const topology of ['pair', 'distributed'] as const) {
      const c = clusterFixture(topology);
      const hba = pgHba(c);
      for (const m of c.machines) assert.ok(hba.includes(`host servicedesk servicedesk ${m.address}/32 scram-sha-256`), `${topology}: ${m.name}`);
      const repl = hba.filter((l) => l.startsWith('host replication'));
      // The db machines, and loopback: Patroni's own replication connection to its PostgreSQL.
      const expected = [...c.machines.filter((m) => m.roles.includes('db')).map((m) => `${m.address}/32`), '127.0.0.1/32'];
      assert.deepEqual(repl.map((l) => l.split(' ')[3]).sort(), expected.sort());
      assert.ok(hba.includes('local all postgres trust'));
      assert.ok(!hba.some((l) => /\b(trust)\b/.test(l) && l.startsWith('host')), 'no trust over TCP');
      // The same lines at bootstrap and at every start.
      const d = doc(c, c.machines.find((m) => m.roles.includes('db'))!.name);
      assert.deepEqual(d.bootstrap!.pg_hba, hba);
      assert.deepEqual(d.postgresql!.pg_hba, hba);
    }
  });

  it('quotes unusual role names in pg_hba', () => {
    // The schema refuses these (src/config/patterns.ts); the quoting stays as a second guard.
    const base = clusterFixture('distributed');
    const c = { ...base, database: { ...base.database, appUser: 'Service Desk', appDatabase: 'all' } };
    assert.ok(pgHba(c).includes('host "all" "Service Desk" 10.0.0.10/32 scram-sha-256'));
  });

  it('sets the replication parameters pg_rewind and slots need', () => {
    const d = dcs(doc(clusterFixture('distributed')));
    const pg = d.postgresql as { use_pg_rewind: boolean; use_slots: boolean; parameters: Record<string, unknown> };
    assert.equal(pg.use_pg_rewind, true);
    assert.equal(pg.use_slots, true);
    assert.equal(pg.parameters.wal_level, 'replica');
    assert.equal(pg.parameters.wal_log_hints, 'on');
    assert.equal(pg.parameters.hot_standby, 'on');
    const initdb = doc(clusterFixture('distributed')).bootstrap!.initdb;
    assert.deepEqual(initdb, [{ encoding: 'UTF8' }, { locale: 'C.UTF-8' }, 'data-checksums']);
    // A replica's pg_basebackup does not wait for a spread checkpoint on the primary.
    assert.deepEqual((doc(clusterFixture('distributed')).postgresql as { basebackup?: unknown }).basebackup, [{ checkpoint: 'fast' }]);
  });
});

describe('patroni --validate-config (Patroni 3.0.2)', () => {
  /**
   * The validator connects to every etcd host (must answer), and to restapi.listen and each
   * postgresql.listen address (must NOT answer: "already in use"); data_dir must be empty or a
   * data directory and bin_dir must hold the PostgreSQL binaries. So: loopback addresses (all of
   * 127/8 is local), free ports, a stand-in listener for etcd, paths relocated to a temp dir.
   */
  async function validate(withEtcd: boolean): Promise<{ code: number | null; out: string }> {
    const base = 100 + Math.floor(Math.random() * 100);
    const addresses = loopbackAddresses(base);
    const c = clusterFixture('distributed', { addresses, database: { port: await freePort(addresses.db1), patroniPort: await freePort(addresses.db1) } });
    const dir = await tempDir('vigil-patroni-');
    const etcd = createServer((s) => s.destroy());
    try {
      if (withEtcd) await new Promise<void>((r, j) => etcd.once('error', j).listen(2379, addresses.observer, () => r()));
      const file = join(dir, 'patroni.yml');
      await writeFile(file, relocate(renderPatroni(c, secrets, machine(c, 'db1')).content, dir), { mode: 0o600 });
      const r = await runTool('patroni', ['--validate-config', file]);
      return { code: r.code, out: r.stdout + r.stderr };
    } finally {
      etcd.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('accepts the generated file', { timeout: 60_000 }, async () => {
    const r = await validate(true);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), '');
  });

  it('really checks (fails when etcd is unreachable)', { timeout: 60_000 }, async () => {
    const r = await validate(false);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /etcd3\.hosts\.0 .* is not reachable/);
  });
});
