/** Answers → vigil.yaml and the secrets file (pure), and the problems bad answers get. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCluster, parseSecrets } from '../config/load.ts';
import { VigilError } from '../util/errors.ts';
import { loadAnswersData } from './answers.ts';
import { nonInteractiveAnswers, type InitOptions } from './init.ts';
import { parseAnswers, renderInit } from './render.ts';

const PAIR = `# answers for a pair
cluster: { name: servicedesk }
topology: pair
ssh: { user: admin, port: 2200 }
machines:
  observer: { address: 10.0.0.10 }
  app1: { address: 10.0.0.11, sshPort: 22 }
  app2: { address: 10.0.0.12, sshUser: root, sshPassword: 'only-app2' }
database: { replication: asynchronous, postgresVersion: 16 }
application:
  passwordFiles:
    - { path: /etc/app/app.properties, key: db.password }
alerts:
  email:
    to: [ops@example.com, oncall@example.com]
    from: vigil@example.com
    smtp: { host: smtp.example.com, port: 587, user: vigil, starttls: required }
passwords:
  appDb: 'it''s a "pw" #1 !x'
  smtp: '  spaced  '
`;

async function initError(p: Promise<unknown> | (() => unknown)): Promise<VigilError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    assert.ok(err instanceof VigilError, String(err));
    return err;
  }
  assert.fail('expected a VigilError');
}

describe('init answers → files', () => {
  it('renders a commented vigil.yaml and a secrets file that load back as given', () => {
    const answers = parseAnswers(PAIR, 'answers.yaml');
    let n = 0;
    const r = renderInit(answers, { newPassword: () => `generated-password-${++n}`, now: new Date('2026-11-25T00:00:00Z') });
    assert.match(r.clusterYaml, /^# The cluster file, written by `vigil init` on 2026-11-25\./);
    assert.match(r.clusterYaml, /address: 10\.0\.0\.10 # roles from the preset: etcd, proxy, observer/);

    const cluster = parseCluster(r.clusterYaml, 'vigil.yaml');
    assert.equal(cluster.cluster.name, 'servicedesk');
    assert.equal(cluster.topology, 'pair');
    const m = Object.fromEntries(cluster.machines.map((x) => [x.name, x]));
    assert.deepEqual([m.observer!.sshUser, m.observer!.sshPort, m.observer!.roles], ['admin', 2200, ['etcd', 'proxy', 'observer']]);
    assert.deepEqual([m.app1!.sshUser, m.app1!.sshPort], ['admin', 22]);
    assert.deepEqual([m.app2!.sshUser, m.app2!.sshPort, m.app2!.roles], ['root', 2200, ['app', 'db']]);
    assert.equal(cluster.database.replication, 'asynchronous');
    assert.deepEqual(cluster.alerts.email?.to, ['ops@example.com', 'oncall@example.com']);
    assert.equal(cluster.application.passwordFiles[0]!.format, 'properties');
    assert.ok(!r.clusterYaml.includes('only-app2') && !r.clusterYaml.includes('spaced'), 'no password in vigil.yaml');

    const secrets = parseSecrets(r.secretsYaml, 'vigil.secrets.yaml');
    assert.deepEqual(secrets, {
      postgresPassword: 'generated-password-1',
      replicationPassword: 'generated-password-2',
      appDbPassword: 'it\'s a "pw" #1 !x',
      patroniRestPassword: 'generated-password-3',
      smtpPassword: '  spaced  ',
    });
    assert.deepEqual(r.generated, ['postgres', 'replication', 'patroniRest']);
  });

  it('generates distinct 32-character passwords by default, and needs no roles for a preset', () => {
    const r = renderInit(
      parseAnswers(
        'topology: distributed\nmachines:\n' + ['observer', 'app1', 'app2', 'db1', 'db2'].map((n, i) => `  ${n}: { address: 10.1.0.${i + 10} }`).join('\n'),
        'a.yaml',
      ),
    );
    const s = parseSecrets(r.secretsYaml, 's');
    const values = [s.postgresPassword, s.replicationPassword, s.appDbPassword, s.patroniRestPassword];
    assert.equal(new Set(values).size, 4);
    for (const v of values) assert.match(v, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(r.cluster.cluster.name, 'vigil');
    assert.equal(r.cluster.machines.length, 5);
    assert.equal(s.vrrpPassword, undefined, 'no keepalived without a floating address, so no VRRP password');
  });

  it('with proxy.virtualAddress: a VRRP password for keepalived, generated unless given', () => {
    const text =
      'topology: custom\nproxy: { virtualAddress: 10.1.0.100 }\nmachines:\n' +
      [
        ['observer', 'etcd, observer', 10],
        ['app1', 'app', 11],
        ['app2', 'app', 12],
        ['db1', 'db', 21],
        ['proxy1', 'proxy', 41],
        ['proxy2', 'proxy', 42],
      ]
        .map(([n, roles, a]) => `  ${n}: { address: 10.1.0.${a}, roles: [${roles}] }`)
        .join('\n');
    const r = renderInit(parseAnswers(text, 'a.yaml'));
    const s = parseSecrets(r.secretsYaml, 's');
    assert.match(s.vrrpPassword ?? '', /^[A-Za-z0-9_-]{32}$/);
    assert.ok(r.generated.includes('vrrp'));
    const given = renderInit(parseAnswers(`${text}\npasswords: { vrrp: Given-vrrp-1 }`, 'a.yaml'));
    assert.equal(parseSecrets(given.secretsYaml, 's').vrrpPassword, 'Given-vrrp-1');
    assert.ok(!given.generated.includes('vrrp'));
  });

  it('reports every problem at once, with line, field and fix, quoting no password', async () => {
    const bad = [
      'topology: pairs', // 1
      'ssh: { user: root, prot: 22 }', // 2
      'machines:', // 3
      '  observer: { address: 10.0.0.10 }', // 4
      '  app1: { address: 10.0.0.300, rolse: [app] }', // 5
      '  app2: { address: 10.0.0.12 }', // 6
      'database: { replication: sync }', // 7
      'passwords:', // 8
      "  postgres: 'short#1'", // 9
      "  smtp: 'smtp-secret'", // 10
    ].join('\n');
    const err = await initError(() => parseAnswers(bad, 'answers.yaml'));
    assert.equal(err.code, 'INIT');
    const lines = err.problems.map((p) => p.where);
    assert.deepEqual(lines, [
      'answers.yaml:1 topology',
      'answers.yaml:2 ssh.prot',
      'answers.yaml:5 machines.app1.rolse',
      'answers.yaml:5 machines.app1.address',
      'answers.yaml:7 database.replication',
      'answers.yaml:9 passwords.postgres',
      'answers.yaml:10 passwords.smtp',
    ]);
    assert.match(err.message, /did you mean `pair`\?/);
    assert.match(err.message, /did you mean `port`\?/);
    assert.match(err.message, /did you mean `roles`\?/);
    assert.ok(!err.message.includes('short#1') && !err.message.includes('smtp-secret'), err.message);
  });

  it('points a problem of the cluster rules at the answers line, ssh defaults included', async () => {
    const text = [
      'topology: custom',
      'ssh: { port: 5432 }',
      'machines:',
      '  a: { address: 10.0.0.1, roles: [etcd, proxy, observer] }',
      '  b: { address: 10.0.0.2, roles: [app, db] }',
      '  c: { address: 10.0.0.2, roles: [app, db] }',
    ].join('\n');
    const err = await initError(() => parseAnswers(text, 'answers.yaml'));
    assert.ok(
      err.problems.some((p) => p.where === 'answers.yaml:6 machines.c.address' && /both have address 10\.0\.0\.2/.test(p.message)),
      err.message,
    );
    assert.ok(
      err.problems.some((p) => p.where === 'answers.yaml:2 ssh.port' && /5432/.test(p.message)),
      err.message,
    );
  });

  it('asks for the SMTP password a login needs, and refuses passwords nothing uses', async () => {
    const login =
      'topology: pair\nmachines: { observer: { address: 10.0.0.10 }, app1: { address: 10.0.0.11 }, app2: { address: 10.0.0.12 } }\nalerts: { email: { to: a@b.cd, from: v@b.cd, smtp: { host: h, user: u } } }\n';
    const err = await initError(() => parseAnswers(login, 'a.yaml'));
    assert.match(err.message, /a\.yaml:3 alerts\.email\.smtp\.user: an SMTP login is set but no SMTP password/);
    const token = await initError(() => parseAnswers(`${login.replace(', user: u', '')}passwords: { webhookToken: t }\n`, 'a.yaml'));
    assert.match(token.message, /passwords\.webhookToken: a webhook token is given but `alerts\.webhook` is not set/);
  });

  it('refuses YAML syntax errors without quoting the line', async () => {
    const err = await initError(() => parseAnswers("topology: pair\npasswords:\n  appDb: 'unterminated secret\n", 'a.yaml'));
    assert.match(err.problems[0]!.where, /^a\.yaml:\d+$/);
    assert.ok(!err.message.includes('unterminated secret'));
  });

  describe('answers files and flags', () => {
    let dir = '';
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'vigil-answers-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('refuses an answers file with passwords that others can read', async () => {
      const file = join(dir, 'answers.yaml');
      await writeFile(file, PAIR, { mode: 0o644 });
      const err = await initError(loadAnswersData(file));
      assert.match(err.message, /holds passwords and has mode 0644/);
      await writeFile(join(dir, 'plain.yaml'), 'topology: pair\n', { mode: 0o644 });
      await loadAnswersData(join(dir, 'plain.yaml')); // no password: any mode
    });

    it('takes flags alone or over a file, and names the flag in problems', async () => {
      const base: InitOptions = { dir, ssh: false };
      const flags = {
        ...base,
        topology: 'pair',
        name: 'desk',
        machine: ['observer=10.0.0.10', 'app1=10.0.0.11', 'app2=10.0.0.12'],
        sshPort: '2222',
        emailTo: 'ops@example.com',
        emailFrom: 'v@example.com',
        smtpHost: 'relay',
      };
      const { answers } = await nonInteractiveAnswers(flags);
      const r = renderInit(answers);
      assert.deepEqual(
        r.cluster.machines.map((m) => [m.name, m.address, m.sshPort]),
        [
          ['observer', '10.0.0.10', 2222],
          ['app1', '10.0.0.11', 2222],
          ['app2', '10.0.0.12', 2222],
        ],
      );
      assert.equal(r.cluster.alerts.email?.smtp.host, 'relay');

      const file = join(dir, 'over.yaml');
      await writeFile(file, PAIR, { mode: 0o600 });
      const over = await nonInteractiveAnswers({ ...base, answers: file, machine: ['app1=10.0.0.21'], sshPasswordStdin: true }, async () => 'from-stdin\n');
      assert.equal(over.answers.machines.find((m) => m.name === 'app1')?.address, '10.0.0.21');
      assert.equal(over.answers.ssh.password, 'from-stdin');

      const err = await initError(nonInteractiveAnswers({ ...flags, machine: ['observer=10.0.0.10', 'app1=10.0.0.999', 'app2=10.0.0.12'] }));
      assert.match(err.message, /^--machine app1=… \(machines\.app1\.address\): `address` must be an IPv4 address/m);
      assert.equal((await initError(nonInteractiveAnswers({ ...base, machine: ['app1'] }))).code, 'USAGE');
    });
  });
});
