import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VigilError } from '../util/errors.ts';
import { parseCluster } from './load.ts';
import { syncDirProblem } from './patterns.ts';
import { fileOf as file, PAIR_LINES as PAIR } from '../testing/clusters.ts';

function problemsOf(text: string) {
  try {
    parseCluster(text, 'c.yaml');
  } catch (err) {
    assert.ok(err instanceof VigilError, String(err));
    assert.equal(err.code, 'CONFIG_INVALID', err.message);
    return err.problems;
  }
  assert.fail(`accepted:\n${text}`);
}

/** The one problem at `where`, with its message and fix checked. */
function refused(text: string, where: string, message: RegExp, fix: RegExp): void {
  const ps = problemsOf(text);
  const p = ps.find((x) => x.where === where);
  assert.ok(p, `no problem at ${where} in ${JSON.stringify(ps, null, 1)}`);
  assert.match(p.message, message);
  assert.match(p.fix, fix);
}

const accepted = (text: string) => assert.doesNotThrow(() => parseCluster(text, 'c.yaml'));

test('database names (L4): the review injections are refused with the line, the value and a fix', () => {
  // A newline would add a pg_hba line that trusts everyone.
  refused(
    file(...PAIR, 'database:', '  appUser: "x\\nhost all all 0.0.0.0/0 trust"'),
    'c.yaml:10 database.appUser',
    /`appUser`: must be a PostgreSQL role name .*pg_hba\.conf and SQL \(found "x\\nhost all all 0\.0\.0\.0\/0 trust"\)/,
    /write e\.g\. `servicedesk`/,
  );
  // `$$` would end the DO body and run the rest as the superuser.
  refused(file(...PAIR, 'database:', "  appDatabase: 'd$$; DROP TABLE x; --'"), 'c.yaml:10 database.appDatabase', /PostgreSQL database name/, /servicedesk/);
  refused(file(...PAIR, 'database:', '  superuser: "Postgres"'), 'c.yaml:10 database.superuser', /lower case/, /`postgres`/);
  refused(file(...PAIR, 'database:', '  replicationUser: all'), 'c.yaml:10 database.replicationUser', /pg_hba\.conf keyword/, /another name/);
  refused(file(...PAIR, 'database:', `  appUser: ${'a'.repeat(64)}`), 'c.yaml:10 database.appUser', /at most 63/, /servicedesk/);
  accepted(file(...PAIR, 'database:', '  appUser: service_desk2', '  appDatabase: _sd', '  superuser: pg', '  replicationUser: repl'));
});

test('proxy.tlsBundle and backendTls paths (L4): nothing that injects a directive into haproxy.cfg or nginx.conf', () => {
  refused(
    file(...PAIR, 'proxy:', '  tlsBundle: "/etc/x.pem\\n  bind *:9999"'),
    'c.yaml:10 proxy.tlsBundle',
    /absolute path of letters, digits and \. _ \/ - \(it is written unquoted into haproxy\.cfg\)/,
    /\/etc\/vigil\/tls\/proxy\.pem/,
  );
  refused(file(...PAIR, 'proxy:', "  tlsBundle: '/etc/x.pem ca-file /tmp/evil'"), 'c.yaml:10 proxy.tlsBundle', /haproxy\.cfg/, /rename or link/);
  refused(file(...PAIR, 'proxy:', '  tlsBundle: /etc/vigil/../x.pem'), 'c.yaml:10 proxy.tlsBundle', /`\.\.`/, /without `\.\.`/);
  refused(
    file(...PAIR, 'application:', '  backendTls:', '    ca: ca.pem', "    certificate: '/etc/a.pem; include /tmp/x'", '    key: /etc/a.key'),
    'c.yaml:12 application.backendTls.certificate',
    /nginx\.conf/,
    /app\.pem/,
  );
  accepted(file(...PAIR, 'proxy:', '  tlsBundle: /etc/vigil/tls/proxy.pem'));
});

test('services[].unit (L4): a systemd unit name, never an option for systemctl', () => {
  for (const unit of ['--now', '-H root@evil x.service', 'x.service --now', 'nginx', 'a b.service', '"x.service\\nExecStart=/bin/sh"']) {
    refused(
      file(...PAIR, 'application:', '  services:', `    - { name: web, unit: ${unit.startsWith('"') ? unit : `'${unit}'`} }`),
      'c.yaml:11 application.services[0].unit',
      /must be a systemd unit name ending in \.service or \.target.*systemctl/,
      /servicedesk\.service/,
    );
  }
  accepted(file(...PAIR, 'application:', '  services:', '    - { name: web, unit: nginx.service }', '    - { name: app, unit: app@blue.service }'));
});

test('syncDirs (L4): not a system tree, not a shared parent, no `..`', () => {
  for (const [dir, why] of [
    ['/', /is \/, which holds more than/],
    ['/etc', /lies in \/etc, a system or data tree/],
    ['/etc/servicedesk', /lies in \/etc/],
    ['/root/files', /lies in \/root/],
    ['/usr/local/app', /lies in \/usr/],
    ['/var/lib', /is \/var\/lib, which holds more/],
    ['/var/lib/postgresql/16', /lies in \/var\/lib\/postgresql/],
    ['/etc/vigil/x', /lies in \/etc/],
    ['/opt/', /is \/opt/],
    ['/var/lib/vigil/../../etc', /`\.\.`/],
    ['/var/./lib', /`\.` components/],
  ] as const) {
    refused(file(...PAIR, 'application:', '  syncDirs:', `    - ${dir}`), 'c.yaml:11 application.syncDirs[0]', why, /application's own data directory/);
  }
  refused(file(...PAIR, 'application:', '  syncDirs:', "    - '/data/a b'"), 'c.yaml:11 application.syncDirs[0]', /no spaces/, /\/var\/lib\/servicedesk/);
  assert.equal(syncDirProblem('/var/lib/vigil/app/attachments'), undefined);
  assert.equal(syncDirProblem('/opt/ServiceOps/attachments'), undefined);
  assert.equal(syncDirProblem('/data'), undefined);
  accepted(file(...PAIR, 'application:', '  syncDirs: [/var/lib/vigil/app/attachments, /opt/ServiceOps/patches]'));
});

test('sshUser, passwordFiles, healthPath (L4)', () => {
  refused(file(...PAIR.slice(0, 4), '    sshUser: "-oProxyCommand=x"', ...PAIR.slice(4)), 'c.yaml:5 machines.observer.sshUser', /user name/, /`root`/);
  refused(
    file(...PAIR, 'application:', '  passwordFiles:', '    - { path: /opt/a.properties, key: "db.password\\nx" }'),
    'c.yaml:11 application.passwordFiles[0].key',
    /written as `key=`/,
    /DB_PASSWORD/,
  );
  refused(
    file(...PAIR, 'application:', '  passwordFiles:', '    - { path: /opt/../etc/shadow, key: k }'),
    'c.yaml:11 application.passwordFiles[0].path',
    /`\.\.`/,
    /absolute path/,
  );
  refused(file(...PAIR, 'application:', '  healthPath: "/health HTTP/1.0\\r\\nHost: x"'), 'c.yaml:10 application.healthPath', /URL path/, /\/health/);
  accepted(
    file(...PAIR, 'application:', '  healthPath: /api/health?deep=1', '  passwordFiles:', '    - { path: /opt/Service Ops/db.properties, key: db.password }'),
  );
});

test('alerts (M6) through the loader: the field, its line and the fix', () => {
  refused(
    file(...PAIR, 'alerts:', '  email:', '    to: a@example.com', '    from: v@example.com', '    smtp: { host: mail.example.com, user: vigil }'),
    'c.yaml:13 alerts.email.smtp.starttls',
    /with `smtp\.user` set, `opportunistic` would send the SMTP password/,
    /starttls: required.*secure: true/,
  );
  refused(
    file(...PAIR, 'alerts:', '  webhook:', '    url: https://bot:hunter2@hooks.example.com/x'),
    'c.yaml:11 alerts.webhook.url',
    /user name or password/,
    /secrets file as `webhookToken`/,
  );
  accepted(
    file(
      ...PAIR,
      'alerts:',
      '  email:',
      '    to: a@example.com',
      '    from: v@example.com',
      '    smtp: { host: mail.example.com, user: vigil, starttls: required }',
    ),
  );
});
