import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VigilError } from '../util/errors.ts';
import { rejectionOf } from '../testing/helpers.ts';
import { clusterFileWarnings, loadCluster, loadSecrets, parseCluster, parseSecrets } from './load.ts';
import type { Cluster } from './schema.ts';
import { fileOf as file, PAIR_LINES as PAIR } from '../testing/clusters.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

/** Lines of a file; `file(...)` joins them so a test can count lines by eye. */

const SECRETS = file('postgresPassword: pg-Xk29fjq0', 'replicationPassword: rp-Lm83hdq1', 'appDbPassword: ap-Qw12zzx9', 'patroniRestPassword: pr-Vb55nmc7');

function errorOf(fn: () => unknown): VigilError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof VigilError, `expected a VigilError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

/**
 * Asserts the error has a problem at exactly `where` (FILE:LINE field), whose message and fix
 * contain the given texts, and that the printed message carries all of it.
 */
function assertProblem(err: VigilError, code: string, where: string, message: string, fix: string): void {
  assert.equal(err.code, code, err.message);
  const p = err.problems.find((x) => x.where === where);
  assert.ok(p, `no problem at "${where}" in:\n${err.message}`);
  assert.ok(p.message.includes(message), `message "${p.message}" lacks "${message}"`);
  assert.ok(p.fix.includes(fix), `fix "${p.fix}" lacks "${fix}"`);
  assert.ok(err.message.includes(`${where}: ${p.message}`) && err.message.includes(p.fix));
}

test('bad YAML: CONFIG_YAML with the line and a fix', () => {
  const err = errorOf(() => parseCluster(file('topology: pair', 'machines:', '  observer: { address: 10.0.0.10', '  app1:'), 'bad.yaml'));
  assertProblem(err, 'CONFIG_YAML', 'bad.yaml:4', 'YAML syntax', 'close every [ with ] and { with }');
});

test('bad YAML: a tab used for indentation', () => {
  const err = errorOf(() => parseCluster(file('topology: pair', 'machines:', '\tobserver: {}'), 'tab.yaml'));
  assertProblem(err, 'CONFIG_YAML', 'tab.yaml:3', 'Tabs', 'replace the tabs');
});

test('unknown key: names it, suggests the closest key and lists the allowed ones', () => {
  const lines = [...PAIR];
  lines[5] = '    adress: 10.0.0.11';
  const err = errorOf(() => parseCluster(file(...lines, 'timer:', '  ttlSeconds: 10'), 'vigil.yaml'));
  assertProblem(
    err,
    'CONFIG_INVALID',
    'vigil.yaml:6 machines.app1.adress',
    'unknown key `adress`',
    'did you mean `address`? Allowed keys here: address, roles, sshUser, sshPort',
  );
  assertProblem(err, 'CONFIG_INVALID', 'vigil.yaml:9 timer', 'unknown key `timer`', 'did you mean `timers`?');
  // The missing address is reported too, at the machine's line: all problems in one pass.
  assertProblem(err, 'CONFIG_INVALID', 'vigil.yaml:5 machines.app1.address', '`address` is required', 'add `address: …`');
});

test('bad enum value: lists the allowed values', () => {
  const lines = [...PAIR];
  lines[0] = 'topology: pairs';
  const err = errorOf(() => parseCluster(file(...lines), 'vigil.yaml'));
  assertProblem(err, 'CONFIG_INVALID', 'vigil.yaml:1 topology', '(found "pairs")', 'write one of: pair, distributed, custom (did you mean `pair`?)');
});

test('bad address: says what an IPv4 address looks like', () => {
  const lines = [...PAIR];
  lines[7] = '    address: 10.0.0.256';
  const err = errorOf(() => parseCluster(file(...lines), 'vigil.yaml'));
  assertProblem(err, 'CONFIG_INVALID', 'vigil.yaml:8 machines.app2.address', 'must be an IPv4 address such as 10.0.0.11', 'address: 10.0.0.11');
});

const custom = (machines: [string, string, string][]) =>
  file('topology: custom', 'machines:', ...machines.map(([name, address, roles]) => `  ${name}: { address: ${address}, roles: [${roles}] }`));

test('even etcd count: tells to remove or add one member', () => {
  const text = custom([
    ['e1', '10.0.0.1', 'etcd, proxy, observer'], // 3
    ['e2', '10.0.0.2', 'etcd, app, db'], //         4
    ['e3', '10.0.0.3', 'etcd, app, db'], //         5
    ['e4', '10.0.0.4', 'etcd'], //                  6
  ]);
  const err = errorOf(() => parseCluster(text, 'c.yaml'));
  assertProblem(
    err,
    'CONFIG_INVALID',
    'c.yaml:6 machines.e4.roles',
    '4 etcd members (e1, e2, e3, e4): etcd needs 1, 3, 5 or 7',
    'remove `etcd` from the roles of `e4` (3 members) or add it to one more machine (5 members)',
  );
});

test('duplicate address: names both machines, at the line of the second', () => {
  const lines = [...PAIR];
  lines[7] = '    address: 10.0.0.11';
  const err = errorOf(() => parseCluster(file(...lines), 'vigil.yaml'));
  assertProblem(
    err,
    'CONFIG_INVALID',
    'vigil.yaml:8 machines.app2.address',
    'machines `app1` and `app2` both have address 10.0.0.11',
    'give `app2` its own address',
  );
});

test('missing role: a machine no preset names, and a role no machine has', () => {
  const text = custom([
    ['obs', '10.0.0.1', 'etcd, observer'],
    ['a1', '10.0.0.2', 'app, db'],
    ['a2', '10.0.0.3', 'app, db'],
  ]).concat('  spare: { address: 10.0.0.4 }\n'); // line 6
  const err = errorOf(() => parseCluster(text, 'c.yaml'));
  assertProblem(err, 'CONFIG_INVALID', 'c.yaml:6 machines.spare.roles', 'missing role: machine `spare` has no roles', 'add `roles: [...]`');
  assertProblem(err, 'CONFIG_INVALID', 'c.yaml:2 machines', 'missing role: no machine has the role proxy', 'add `proxy` to the roles of the observer machine');
});

test('missing role: a single app machine', () => {
  const text = custom([
    ['obs', '10.0.0.1', 'etcd, proxy, observer'],
    ['a1', '10.0.0.2', 'app, db'],
  ]);
  const err = errorOf(() => parseCluster(text, 'c.yaml'));
  assertProblem(err, 'CONFIG_INVALID', 'c.yaml:2 machines', 'only `a1` has the role app; failover needs at least 2', 'add a second application machine');
});

test('missing preset machine: names it and its roles', () => {
  const err = errorOf(() => parseCluster(file(...PAIR.slice(0, 6)), 'vigil.yaml'));
  assertProblem(
    err,
    'CONFIG_INVALID',
    'vigil.yaml:2 machines.app2',
    'topology pair needs a machine named `app2` (roles app, db)',
    'add `app2: { address: <its IPv4 address> }` under machines',
  );
});

test("timers: Patroni's loop_wait + 2 × retry_timeout <= ttl, with a concrete fix", () => {
  const err = errorOf(() => parseCluster(file(...PAIR, 'timers:', '  ttlSeconds: 10', '  loopWaitSeconds: 2', '  retryTimeoutSeconds: 5'), 'vigil.yaml'));
  assertProblem(err, 'CONFIG_INVALID', 'vigil.yaml:10 timers.ttlSeconds', '= 12 exceeds ttlSeconds (10)', 'set `ttlSeconds: 12` or `retryTimeoutSeconds: 4`');
});

test('ports: proxy and application ports collide on a machine with both roles', () => {
  const text = custom([
    ['edge', '10.0.0.1', 'etcd, proxy, observer, app'],
    ['a2', '10.0.0.2', 'app, db'],
  ]).concat('application:\n  port: 80\n'); // line 6
  const err = errorOf(() => parseCluster(text, 'c.yaml'));
  assertProblem(
    err,
    'CONFIG_INVALID',
    'c.yaml:6 application.port',
    'proxy.httpPort and application.port are both 80 on machine `edge`',
    'change application.port to a free port, e.g. 81',
  );
});

test('tls: a certificate without its key, names without a bundle, names beside your own certificate', () => {
  const noKey = errorOf(() => parseCluster(file(...PAIR, 'proxy:', '  tlsBundle: /etc/vigil/tls/proxy.pem', '  tlsCertificate: tls/site.crt'), 'vigil.yaml'));
  assertProblem(
    noKey,
    'CONFIG_INVALID',
    'vigil.yaml:11 proxy.tlsCertificate',
    'proxy.tlsCertificate is set without proxy.tlsKey',
    'add `tlsKey: <file>` under proxy',
  );
  const noBundle = errorOf(() => parseCluster(file(...PAIR, 'proxy:', '  tlsDnsNames: [servicedesk.example.com]'), 'vigil.yaml'));
  assertProblem(
    noBundle,
    'CONFIG_INVALID',
    'vigil.yaml:10 proxy.tlsDnsNames',
    'proxy.tlsDnsNames is set but proxy.tlsBundle is not',
    'add `tlsBundle: /etc/vigil/tls/proxy.pem` under proxy',
  );
  const both = errorOf(() =>
    parseCluster(
      file(
        ...PAIR,
        'proxy:',
        '  tlsBundle: /etc/vigil/tls/proxy.pem',
        '  tlsCertificate: tls/site.crt',
        '  tlsKey: tls/site.key',
        '  tlsDnsNames: [servicedesk.example.com]',
      ),
      'vigil.yaml',
    ),
  );
  assertProblem(
    both,
    'CONFIG_INVALID',
    'vigil.yaml:13 proxy.tlsDnsNames',
    'with proxy.tlsCertificate the names are those your CA put in it',
    'remove tlsDnsNames',
  );
  const badName = errorOf(() => parseCluster(file(...PAIR, 'proxy:', '  tlsBundle: /etc/vigil/tls/proxy.pem', '  tlsDnsNames: ["not a name"]'), 'vigil.yaml'));
  assertProblem(badName, 'CONFIG_INVALID', 'vigil.yaml:11 proxy.tlsDnsNames[0]', 'must be a DNS name such as servicedesk.example.com', '');
  const ok = parseCluster(file(...PAIR, 'proxy:', '  tlsBundle: /etc/vigil/tls/proxy.pem', '  tlsDnsNames: [servicedesk.example.com]'), 'vigil.yaml');
  assert.deepEqual(ok.proxy.tlsDnsNames, ['servicedesk.example.com']);
});

test('application.backendTls: who provides the certificate follows from ca; verify false is valid with a located warning', () => {
  const ok = parseCluster(file(...PAIR, 'application:', '  backendTls: {}'), 'vigil.yaml');
  assert.deepEqual(ok.application.backendTls, { port: 443, ca: 'cluster', verify: true });
  assert.deepEqual(clusterFileWarnings(file(...PAIR, 'application:', '  backendTls: {}'), 'vigil.yaml'), []);
  const withCert = errorOf(() => parseCluster(file(...PAIR, 'application:', '  backendTls:', '    certificate: /etc/ssl/a.pem'), 'vigil.yaml'));
  assertProblem(
    withCert,
    'CONFIG_INVALID',
    'vigil.yaml:11 application.backendTls.certificate',
    "application.backendTls.certificate is set while ca is `cluster`: apply issues nginx's certificate and key from the cluster CA itself",
    'remove certificate',
  );
  const noKey = errorOf(() =>
    parseCluster(file(...PAIR, 'application:', '  backendTls:', '    ca: tls/our-ca.pem', '    certificate: /etc/ssl/a.pem'), 'vigil.yaml'),
  );
  assertProblem(
    noKey,
    'CONFIG_INVALID',
    'vigil.yaml:11 application.backendTls.ca',
    'application.backendTls.ca is your CA (tls/our-ca.pem) but application.backendTls.key is not set',
    'add `key: /etc/ssl/servicedesk/app.key`',
  );
  const clash = errorOf(() => parseCluster(file(...PAIR, 'application:', '  backendTls:', '    port: 8008'), 'vigil.yaml'));
  assertProblem(clash, 'CONFIG_INVALID', 'vigil.yaml:11 application.backendTls.port', 'application.backendTls.port and database.patroniPort are both 8008', '');
  const none = file(...PAIR, 'application:', '  backendTls:', '    verify: false');
  assert.equal(parseCluster(none, 'vigil.yaml').application.backendTls?.verify, false);
  const [w, ...more] = clusterFileWarnings(none, 'vigil.yaml');
  assert.equal(more.length, 0);
  assert.equal(w?.where, 'vigil.yaml:11 application.backendTls.verify');
  assert.match(w!.message, /verify none/);
  assert.match(w!.fix, /remove `verify: false`/);
});

test('presets: pair and distributed resolve with the right roles', async () => {
  const roles = (c: Cluster) => Object.fromEntries(c.machines.map((m) => [m.name, m.roles]));
  const pair = parseCluster(file(...PAIR), 'p.yaml');
  assert.deepEqual(roles(pair), { observer: ['etcd', 'proxy', 'observer'], app1: ['app', 'db'], app2: ['app', 'db'] });
  assert.equal(pair.source, 'p.yaml');
  assert.equal(pair.database.replication, 'synchronous');
  const dist = await loadCluster(join(EXAMPLES, 'distributed.yaml'));
  assert.deepEqual(roles(dist), { observer: ['etcd', 'proxy', 'observer'], app1: ['app'], app2: ['app'], db1: ['db'], db2: ['db'] });
});

test('custom topology: 3 etcd members, 3 db and 3 app machines validate', () => {
  const c = parseCluster(
    custom([
      ['obs1', '10.0.0.1', 'etcd, proxy, observer'],
      ['obs2', '10.0.0.2', 'etcd, proxy, observer'],
      ['arb', '10.0.0.3', 'etcd'],
      ['app1', '10.0.0.11', 'app'],
      ['app2', '10.0.0.12', 'app'],
      ['app3', '10.0.0.13', 'app'],
      ['db1', '10.0.0.21', 'db'],
      ['db2', '10.0.0.22', 'db'],
      ['db3', '10.0.0.23', 'db'],
    ]),
    'big.yaml',
  );
  assert.equal(c.machines.length, 9);
  assert.equal(c.machines.filter((m) => m.roles.includes('etcd')).length, 3);
});

test('examples validate; the example secrets file is refused only for its placeholders', async () => {
  for (const name of ['pair.yaml', 'distributed.yaml']) {
    const c = await loadCluster(join(EXAMPLES, name));
    assert.equal(c.topology, name.replace('.yaml', ''));
  }
  const source = join(EXAMPLES, 'vigil.secrets.example.yaml');
  const err = errorOf(() => parseSecrets(readFileSync(source, 'utf8'), source));
  assert.equal(err.code, 'SECRETS_INVALID');
  assert.deepEqual(
    err.problems.map((p) => p.message),
    ['postgresPassword', 'replicationPassword', 'appDbPassword', 'patroniRestPassword'].map((k) => `${k} still holds the placeholder from the example file`),
  );
});

test('cluster file missing: CONFIG_READ naming the path, fix points at the examples', async () => {
  const err = await rejectionOf(loadCluster('/nonexistent/vigil.yaml'));
  assertProblem(err, 'CONFIG_READ', '/nonexistent/vigil.yaml', 'no such file', 'examples/ holds pair.yaml and distributed.yaml');
});

// ------------------------------------------------------------------ secrets

test('missing secret: names the key, with the line', () => {
  const text = file('postgresPassword: pg-Xk29fjq0', 'replicationPassword: rp-Lm83hdq1', 'appDbPassword: ap-Qw12zzx9');
  const err = errorOf(() => parseSecrets(text, 'vigil.secrets.yaml'));
  assertProblem(err, 'SECRETS_INVALID', 'vigil.secrets.yaml:1 patroniRestPassword', '`patroniRestPassword` is required', 'add `patroniRestPassword: …`');
});

test('unquoted " #" in a secret: refused rather than silently cut short', () => {
  const err = errorOf(() => parseSecrets(SECRETS.replace('rp-Lm83hdq1', 'rp-Lm83 #hdq1'), 'vigil.secrets.yaml'));
  assertProblem(err, 'SECRETS_INVALID', 'vigil.secrets.yaml:2 replicationPassword', 'start of a comment', "replicationPassword: '…'");
});

test('unknown secret key: names it and suggests the right one', () => {
  const text = SECRETS.replace('appDbPassword', 'appPassword');
  const err = errorOf(() => parseSecrets(text, 'vigil.secrets.yaml'));
  assertProblem(err, 'SECRETS_INVALID', 'vigil.secrets.yaml:3 appPassword', 'unknown key `appPassword`', 'did you mean `appDbPassword`?');
});

/** A cluster file in a fresh directory, with a secrets file next to it. */
async function clusterDir(secrets: string | undefined, mode = 0o600): Promise<{ dir: string; cluster: Cluster }> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-load-'));
  await writeFile(join(dir, 'vigil.yaml'), file(...PAIR));
  if (secrets !== undefined) {
    await writeFile(join(dir, 'vigil.secrets.yaml'), secrets);
    await chmod(join(dir, 'vigil.secrets.yaml'), mode);
  }
  return { dir, cluster: await loadCluster(join(dir, 'vigil.yaml')) };
}

test('secrets file: read next to the cluster file', async () => {
  const { dir, cluster } = await clusterDir(SECRETS);
  try {
    assert.equal((await loadSecrets(cluster)).appDbPassword, 'ap-Qw12zzx9');
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('secrets file mode: readable by others is refused, fix chmod 600', async () => {
  const { dir, cluster } = await clusterDir(SECRETS, 0o644);
  try {
    const path = join(dir, 'vigil.secrets.yaml');
    const err = await rejectionOf(loadSecrets(cluster));
    assertProblem(err, 'SECRETS_INVALID', path, 'mode 0644', `chmod 600 ${path}`);
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('secrets file missing: fix shows how to create it with mode 600', async () => {
  const { dir, cluster } = await clusterDir(undefined);
  try {
    const path = join(dir, 'vigil.secrets.yaml');
    const err = await rejectionOf(loadSecrets(cluster));
    assertProblem(err, 'CONFIG_READ', path, 'does not exist', `install -m 600 /dev/null ${path}`);
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('no secret value ever appears in an error message', async () => {
  const secret = 'Zq7"xK9]p: #s3cr3t';
  const quoted = JSON.stringify(secret);
  const fragments = ['Zq7', 'xK9', 's3cr3t', '\\q'];
  const texts = [
    SECRETS.replace('pg-Xk29fjq0', quoted.slice(0, -1)), // unterminated quote
    SECRETS.replace('pg-Xk29fjq0', secret), // plain scalar with ": " and "]": a syntax error
    SECRETS.replace('pg-Xk29fjq0', `[${quoted}`), // unterminated flow sequence
    SECRETS.replace('pg-Xk29fjq0', '"Zq7xK9"'), // too short
    SECRETS.replace('pg-Xk29fjq0', `{ a: ${quoted} }`), // wrong type
    SECRETS.replace('postgresPassword', 'postgresPasword').replace('pg-Xk29fjq0', quoted), // unknown key
    SECRETS.replace('pg-Xk29fjq0', '"CHANGE-ME-Zq7xK9s3cr3t"'), // placeholder
    `${quoted}\n`, // not a map at all
    `${SECRETS}postgresPassword: ${quoted}\n`, // duplicate key
    SECRETS.replace('pg-Xk29fjq0', '@Zq7xK9s3cr3t'), // reserved first character
    SECRETS.replace('pg-Xk29fjq0', '"Zq7\\qxK9s3cr3t"'), // bad escape in double quotes
    SECRETS.replace('pg-Xk29fjq0', '!Zq7xK9s3cr3t value'), // unknown tag
    SECRETS.replace('pg-Xk29fjq0', 'Zq7xK9 #s3cr3t'), // the rest reads as a comment
  ];
  for (const text of texts) {
    const err = errorOf(() => parseSecrets(text, 'vigil.secrets.yaml'));
    const shown = `${err.message}\n${JSON.stringify(err.problems)}`;
    for (const f of fragments) assert.ok(!shown.includes(f), `"${f}" leaked for input ${JSON.stringify(text)}:\n${shown}`);
  }
  const { dir, cluster } = await clusterDir(SECRETS.replace('pg-Xk29fjq0', quoted), 0o640);
  try {
    const err = await rejectionOf(loadSecrets(cluster));
    for (const f of fragments) assert.ok(!err.message.includes(f));
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('application.tlsEndpoints: defaults, a service that is not one of application.services, a relative path, a port clash', () => {
  const endpoint = (...lines: string[]) => file(...PAIR, 'application:', '  tlsEndpoints:', ...lines); // the entry starts on line 11
  const ok = parseCluster(endpoint('    - service: app', '      port: 8443', '      settingsFile: /opt/app/appsettings.json'), 'c.yaml');
  assert.deepEqual(ok.application.tlsEndpoints, [
    {
      service: 'app',
      port: 8443,
      settingsFile: '/opt/app/appsettings.json',
      format: 'json',
      certificatePathKey: 'CertificateFilePath',
      keyPathKey: 'KeyFilePath',
    },
  ]);
  const typo = errorOf(() => parseCluster(endpoint('    - service: ap', '      port: 8443', '      settingsFile: /opt/app/appsettings.json'), 'c.yaml'));
  assertProblem(
    typo,
    'CONFIG_INVALID',
    'c.yaml:11 application.tlsEndpoints[0].service',
    '`ap` is not a service of application.services (nginx, app)',
    'did you mean `app`?',
  );
  const relative = errorOf(() => parseCluster(endpoint('    - service: app', '      port: 8443', '      settingsFile: appsettings.json'), 'c.yaml'));
  assert.match(relative.message, /c\.yaml:13 application\.tlsEndpoints\[0\]\.settingsFile: `settingsFile` must start with "\/"/);
  const clash = errorOf(() => parseCluster(endpoint('    - service: app', '      port: 80', '      settingsFile: /opt/app/appsettings.json'), 'c.yaml'));
  assert.match(clash.message, /application\.port and application\.tlsEndpoints\[0\]\.port are both 80/);
});

test('application.services[].runsOn and application.activation: defaults, a warm service without the hook, a hook off loopback', () => {
  const app = (...lines: string[]) => file(...PAIR, 'application:', ...lines); // application's first line is 10
  const plain = parseCluster(file(...PAIR), 'c.yaml');
  assert.deepEqual(
    plain.application.services.map((s) => s.runsOn),
    ['active', 'active'],
  );
  assert.equal(plain.application.activation, undefined);
  assert.equal(plain.application.refappStartupSeconds, 60);
  const services = [
    '  services:',
    '    - name: nginx',
    '      unit: vigil-nginx.service',
    '    - name: app',
    '      unit: vigil-refapp.service',
    '      runsOn: every',
  ];
  const warm = parseCluster(app(...services, '  activation:', '    url: http://127.0.0.1:8081/vigil/activation'), 'c.yaml');
  assert.deepEqual(warm.application.activation, { url: 'http://127.0.0.1:8081/vigil/activation', timeoutMs: 3000 });
  assert.deepEqual(
    warm.application.services.map((s) => s.runsOn),
    ['active', 'every'],
  );
  const noHook = errorOf(() => parseCluster(app(...services), 'c.yaml'));
  assertProblem(
    noHook,
    'CONFIG_INVALID',
    'c.yaml:15 application.services[1].runsOn',
    '`app` runs on every app machine, but application.activation is not set',
    'add application.activation',
  );
  const remote = errorOf(() => parseCluster(app(...services, '  activation:', '    url: http://10.0.0.11:8081/x'), 'c.yaml'));
  assert.match(remote.message, /c\.yaml:17 application\.activation\.url: `url` must be an http:\/\/ URL on loopback/);
  const command = parseCluster(app(...services, '  activation:', '    command: [/opt/app/bin/activate, --quiet]', '    timeoutMs: 5000'), 'c.yaml');
  assert.deepEqual(command.application.activation, { command: ['/opt/app/bin/activate', '--quiet'], timeoutMs: 5000 });
  const inFile = parseCluster(app(...services, '  activation:', '    file: /run/app/vigil-activation.json'), 'c.yaml');
  assert.deepEqual(inFile.application.activation, { file: '/run/app/vigil-activation.json', timeoutMs: 3000 });
  const relativeCommand = errorOf(() => parseCluster(app(...services, '  activation:', '    command: [activate]'), 'c.yaml'));
  assert.match(relativeCommand.message, /c\.yaml:17 application\.activation\.command: .*first element must be the absolute path of the program/);
  const two = errorOf(() => parseCluster(app(...services, '  activation:', '    file: /run/a.json', '    command: [/bin/a]'), 'c.yaml'));
  assert.match(two.message, /application\.activation: .*has command and file: give only one of url, command or file/);
  const none = errorOf(() => parseCluster(app(...services, '  activation:', '    timeoutMs: 1000'), 'c.yaml'));
  assert.match(none.message, /application\.activation: .*needs one of url, command or file/);
  const twice = errorOf(() =>
    parseCluster(app('  services:', '    - name: app', '      unit: a.service', '    - name: app', '      unit: b.service'), 'c.yaml'),
  );
  assertProblem(twice, 'CONFIG_INVALID', 'c.yaml:13 application.services[1].name', '`app` names two services', 'its own name');
});

test('metrics: defaults; a bad listen value lists the allowed ones; a port of the agent or observer that collides is named with a free one', () => {
  const c = parseCluster(file(...PAIR), 'vigil.yaml');
  assert.deepEqual(c.metrics, { enabled: true, listen: 'machine', agentPort: 9710, observerPort: 9711, auth: 'none' });
  const bad = errorOf(() => parseCluster(file(...PAIR, 'metrics:', '  listen: everywhere'), 'vigil.yaml'));
  assertProblem(
    bad,
    'CONFIG_INVALID',
    'vigil.yaml:10 metrics.listen',
    'must be machine, loopback, any or an IPv4 address (found "everywhere")',
    '`loopback`, `any`, or one IPv4 address',
  );
  const auth = errorOf(() => parseCluster(file(...PAIR, 'metrics:', '  auth: basic'), 'vigil.yaml'));
  assertProblem(auth, 'CONFIG_INVALID', 'vigil.yaml:10 metrics.auth', '(found "basic")', 'none, mtls');
  // pair: app1 runs an agent and Patroni; the observer machine the observer and HAProxy.
  const agent = errorOf(() => parseCluster(file(...PAIR, 'metrics:', '  agentPort: 8008'), 'vigil.yaml'));
  assertProblem(
    agent,
    'CONFIG_INVALID',
    'vigil.yaml:10 metrics.agentPort',
    'database.patroniPort and metrics.agentPort are both 8008',
    'change metrics.agentPort to a free port, e.g. 8009',
  );
  const observer = errorOf(() => parseCluster(file(...PAIR, 'metrics:', '  observerPort: 7000'), 'vigil.yaml'));
  assertProblem(
    observer,
    'CONFIG_INVALID',
    'vigil.yaml:10 metrics.observerPort',
    'proxy.statsPort and metrics.observerPort are both 7000',
    'change metrics.observerPort',
  );
  const api = errorOf(() => parseCluster(file(...PAIR, 'metrics:', '  agentPort: 7710'), 'vigil.yaml'));
  assertProblem(api, 'CONFIG_INVALID', 'vigil.yaml:10 metrics.agentPort', 'metrics.agentPort and agent API port are both 7710', 'change metrics.agentPort');
  // Off: its ports are not in use, so nothing collides.
  assert.equal(parseCluster(file(...PAIR, 'metrics:', '  enabled: false', '  agentPort: 8008'), 'vigil.yaml').metrics.enabled, false);
});
