/**
 * `vigil doctor` against a `distributed` lab: a healthy lab is reported healthy (exit 0), then
 * each fault the issue lists is planted, found (on the right machine, with a fix) and undone:
 * nginx running on the standby, another database password in one application config file, wrong
 * ownership of one of Vigil's directories, a closed port, a stopped etcd; and the seed's "HTTPS port
 * not listening after restart" on the reference application's own HTTPS port (its appsettings.json,
 * `application.tlsEndpoints`): a key disabled by a leading underscore, a wrong path, a Windows
 * path, an unreadable key file, a key that does not belong to the certificate, the port not
 * listening. Faults on the active machine are followed by `systemctl reload vigil-refapp.service`,
 * which reopens the app's HTTPS port from its settings as a restart would, while HTTP serves on
 * (no failover). Last, with every fault undone, the lab is healthy again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { withRole } from '../../src/config/schema.ts';
import { connectFromHere } from '../../src/doctor/gather-cluster.ts';
import type { DoctorReport, Finding } from '../../src/doctor/types.ts';
import { overwritesLeaderKey, parsePatroniVersion } from '../../src/patroni/versions.ts';
import { PATHS } from '../../src/layout/paths.ts';
import { REFAPP_HTTPS_PORT, etcdEndpoints } from '../../src/layout/network.ts';
import { UNITS } from '../../src/layout/units.ts';
import { findPrimary, labAdminPki, labAgents, labDown, labHeal, labRun, labStart, labStopUnit, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { hostPathOf } from '../../src/lab/paths.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { run, waitFor } from '../../src/util/exec.ts';
import { request as httpsRequest } from 'node:https';
import { openStore, storeTls } from '../../src/etcd/store.ts';
import { KEYS, keyPrefix } from '../../src/model/ha.ts';
import { mtlsFetch } from '../../src/mtls/mtls.ts';
import { createClusterCa, issueCertificate } from '../../src/pki/ca.ts';

let lab: LabHandle;
let standby: string;
let active: string;

async function doctor(): Promise<{ code: number; report: DoctorReport; ms: number }> {
  const started = performance.now();
  const { code, stdout } = await new Promise<{ code: number; stdout: string }>((resolve) =>
    execFile(process.execPath, ['bin/vigil.js', 'doctor', '--lab', '--json'], { timeout: 90_000, maxBuffer: 16 << 20 }, (err, out) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: out }),
    ),
  );
  const report = JSON.parse(stdout) as DoctorReport;
  const ms = performance.now() - started;
  for (const f of report.findings) console.log(`# ${f.severity} ${f.machine ?? 'cluster'} ${f.check}: ${f.what} | fix: ${f.fix}`);
  console.log(`# doctor: exit ${code}, ${report.summary.failures} failure(s), ${report.summary.warnings} warning(s), ${(ms / 1000).toFixed(1)} s`);
  return { code, report, ms };
}

function finding(report: DoctorReport, check: Finding['check'], machine: string | null, what: RegExp): Finding {
  const f = report.findings.find((x) => x.check === check && x.machine === machine && what.test(x.what));
  assert.ok(
    f,
    `a ${check} finding on ${machine ?? 'the cluster'} matching ${what}; got:\n${report.findings.map((x) => `${x.check} ${x.machine}: ${x.what}`).join('\n')}`,
  );
  assert.equal(f.severity, 'fail');
  assert.ok(f.why.length > 0 && f.fix.length > 0);
  return f;
}

const listening = async (address: string, port: number) => (await connectFromHere(address, port, 1000)).outcome === 'open';
const address = (name: string) => lab.cluster.machines.find((m) => m.name === name)!.address;

before(async () => {
  await labDown();
  lab = await labUp({ topology: 'distributed' }, (l) => console.log(`# lab: ${l}`));
  await labSettled(lab);
  const agents = await labAgents();
  standby = withRole(lab.cluster, 'app').find((m) => agents.get(m.name)?.active === false)!.name;
  active = withRole(lab.cluster, 'app').find((m) => agents.get(m.name)?.active === true)!.name;
});

after(async () => {
  await labHeal().catch(() => {});
  await labDown();
});

test('a healthy lab is healthy: exit status 0, no failure, every machine reached', async () => {
  const { code, report } = await doctor();
  assert.equal(report.summary.failures, 0);
  assert.equal(code, 0);
  assert.equal(report.exitStatus, 0);
  assert.equal(report.machines.length, 5);
  assert.ok(report.machines.every((m) => m.reachable && m.checks.some((c) => c.check === 'ports' && c.status === 'ok')));
  // The app's own HTTPS port: checked on both app machines, nothing found.
  assert.deepEqual(
    report.findings.filter((f) => f.check === 'app-tls'),
    [],
  );
  for (const m of withRole(lab.cluster, 'app'))
    assert.deepEqual(
      report.machines.find((x) => x.name === m.name)!.checks.find((c) => c.check === 'app-tls'),
      { check: 'app-tls', status: 'ok' },
    );
  assert.ok(await httpsListens(active), 'the HTTPS port listens on the active machine');
  // What the db machines hold against a stale primary, read on them: the release's Patroni and
  // no watchdog device in a lab machine.
  const version = parsePatroniVersion((await labRun('db1', ['patroni', '--version'])).stdout);
  for (const db of ['db1', 'db2']) {
    const mine = report.findings.filter((f) => f.check === 'stale-primary' && f.machine === db);
    assert.ok(
      mine.some((f) => f.severity === 'warn' && new RegExp(`^${db} has no watchdog device`).test(f.what)),
      `${db}: no watchdog device`,
    );
    assert.equal(
      mine.some((f) => /renews its leader key in etcd with a plain write/.test(f.what)),
      overwritesLeaderKey(version),
      `${db}: Patroni ${version.join('.')}`,
    );
  }
});

// The reference application's HTTPS port (application.tlsEndpoints): each fault of the seed's
// "HTTPS port not listening after restart", planted in its appsettings.json or its files.

const SETTINGS = PATHS.refappSettings;
const KEY = PATHS.refappTlsKey;

/** Whether the app's HTTPS port listens on the machine (it listens on loopback there). */
const httpsListens = async (m: string) => (await labRun(m, ['ss', '-Hltn', `sport = :${REFAPP_HTTPS_PORT}`])).stdout.trim() !== '';

/** `systemctl reload`: the app reads its HTTPS settings again (as after a restart), HTTP serves on. */
async function reloadApp(m: string, listening: boolean): Promise<void> {
  assert.equal((await labRun(m, ['systemctl', 'reload', UNITS.refapp])).code, 0, 'systemctl reload vigil-refapp.service');
  await waitFor(
    `the HTTPS port on ${m} to be ${listening ? 'open' : 'closed'}`,
    async () => ((await httpsListens(m)) === listening ? true : undefined),
    15_000,
    100,
  );
}

/** Plants an edit of the settings file on `m`, runs doctor, puts the file back (and the port, on the active machine). */
async function withSettings(m: string, edit: (text: string) => string, check: (report: DoctorReport) => void): Promise<void> {
  const file = hostPathOf(m, SETTINGS);
  const original = await readFile(file, 'utf8');
  const planted = edit(original);
  assert.notEqual(planted, original, 'the edit changes the file');
  await writeFile(file, planted);
  try {
    if (m === active) await reloadApp(m, false);
    const { code, report } = await doctor();
    assert.equal(code, 1);
    check(report);
  } finally {
    await writeFile(file, original);
    if (m === active) await reloadApp(m, true);
  }
}

/** A JSON POST over https with this identity (or none): the status, or 0 and the error when the connection or the TLS handshake failed. */
function httpsPost(
  url: string,
  body: string,
  id: { ca: string; cert?: string; key?: string },
  o: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; error?: string }> {
  return new Promise((resolve) => {
    const headers = { 'content-type': 'application/json', ...o.headers };
    const req = httpsRequest(url, { method: o.method ?? 'POST', ...id, timeout: 5000, agent: false, headers }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, error: err.code ?? err.message }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

test('etcd refuses an outsider: plain http, https without a client certificate, one from another CA (gateway, gRPC, etcdctl); nothing changes', async () => {
  const admin = await labAdminPki();
  const otherCa = await createClusterCa({ clusterName: lab.cluster.cluster.name });
  const foreign = await issueCertificate(otherCa, { commonName: 'admin', ipAddresses: [], usage: 'client' });
  const stranger = { ca: admin.ca, cert: foreign.certPem, key: foreign.keyPem };
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const prefix = keyPrefix(lab.cluster.cluster.name);
  const activeKey = `${prefix}${KEYS.active}`;
  const probeKey = `${prefix}outsider-probe`;
  const members = withRole(lab.cluster, 'etcd');
  // What the admin reads through the gateway (the positive control: the same port, with the CA's certificate).
  const adminRange = async (key: string) => {
    const r = await mtlsFetch(`https://${members[0]!.address}:2379/v3/kv/range`, { ...admin, json: { key: b64(key) }, timeoutMs: 10_000 });
    assert.equal(r.status, 200, r.text);
    return r.json<{ kvs?: { value?: string }[] }>().kvs ?? [];
  };
  const before = await adminRange(activeKey);
  assert.equal(before.length, 1, 'the active record is there');
  const writes = [
    JSON.stringify({ key: b64(activeKey), value: b64('{"node":"intruder","epoch":999999}') }),
    JSON.stringify({ key: b64(probeKey), value: b64('outsider') }),
  ];
  const read = JSON.stringify({ key: b64(activeKey) });
  const seen: string[] = [];
  for (const m of members) {
    for (const body of [...writes, read]) {
      const path = body === read ? '/v3/kv/range' : '/v3/kv/put';
      const plain = await fetch(`http://${m.address}:2379${path}`, { method: 'POST', body, signal: AbortSignal.timeout(5000) }).then(
        (r) => ({ status: r.status, error: undefined as string | undefined }),
        (err: Error) => ({ status: 0, error: String((err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.name) }),
      );
      const noCert = await httpsPost(`https://${m.address}:2379${path}`, body, { ca: admin.ca });
      const other = await httpsPost(`https://${m.address}:2379${path}`, body, stranger);
      seen.push(
        `${m.name} ${path}: http ${plain.status} ${plain.error ?? ''}; https without a certificate ${noCert.status} ${noCert.error ?? ''}; another CA's ${other.status} ${other.error ?? ''}`,
      );
      assert.notEqual(plain.status, 200, `plain http ${path} on ${m.name}`);
      assert.equal(noCert.status, 0, `https without a client certificate, ${path} on ${m.name}: refused at the handshake`);
      assert.equal(other.status, 0, `https with another CA's certificate, ${path} on ${m.name}: refused at the handshake`);
    }
    // etcdctl on a cluster machine (the member's own), without a certificate and over plain http.
    for (const argv of [
      [
        'etcdctl',
        `--cacert=${PATHS.pkiDir}/ca.pem`,
        `--endpoints=https://${m.address}:2379`,
        '--dial-timeout=3s',
        '--command-timeout=5s',
        'put',
        probeKey,
        'outsider',
      ],
      ['etcdctl', `--endpoints=http://${m.address}:2379`, '--dial-timeout=3s', '--command-timeout=5s', 'put', probeKey, 'outsider'],
    ]) {
      const r = await labRun(m.name, argv);
      seen.push(`${m.name} ${argv[1]} put: exit ${r.code} ${r.stderr.trim().split('\n').pop() ?? ''}`);
      assert.notEqual(r.code, 0, `${argv.join(' ')} on ${m.name}: ${r.stdout}`);
    }
  }
  // gRPC, as Vigil's own client, with another CA's certificate.
  await assert.rejects(
    openStore({ endpoints: etcdEndpoints(lab.cluster), cluster: lab.cluster.cluster.name, dialTimeoutMs: 5000, callTimeoutMs: 5000, tls: storeTls(stranger) }),
    'gRPC with a certificate from another CA',
  );
  for (const line of seen) console.log(`# refused: ${line}`);
  assert.deepEqual(await adminRange(activeKey), before, 'the active record is unchanged');
  assert.deepEqual(await adminRange(probeKey), [], 'no outsider key was written');
});

test("Patroni's REST API refuses an outsider: plain http, a write without a client certificate or with another CA's (password or not); reads stay open over TLS; nothing changes", async () => {
  const admin = await labAdminPki();
  const otherCa = await createClusterCa({ clusterName: lab.cluster.cluster.name });
  const foreign = await issueCertificate(otherCa, { commonName: 'admin', ipAddresses: [], usage: 'client' });
  const stranger = { ca: admin.ca, cert: foreign.certPem, key: foreign.keyPem };
  // The REST password (restapi.authentication): an outsider who learnt it still may not write.
  const basic = { authorization: `Basic ${Buffer.from(`vigil:${lab.secrets.patroniRestPassword}`).toString('base64')}` };
  const port = lab.cluster.database.patroniPort;
  const lag = async (m: { address: string }) => {
    const r = await mtlsFetch(`https://${m.address}:${port}/config`, { ...admin, timeoutMs: 10_000 });
    assert.equal(r.status, 200, r.text);
    return r.json<{ maximum_lag_on_failover?: number }>().maximum_lag_on_failover;
  };
  const dbs = withRole(lab.cluster, 'db');
  const before = await lag(dbs[0]!);
  const change = JSON.stringify({ maximum_lag_on_failover: (before ?? 0) + 1 });
  const seen: string[] = [];
  for (const m of dbs) {
    const url = (path: string) => `https://${m.address}:${port}${path}`;
    const plain = await fetch(`http://${m.address}:${port}/patroni`, { signal: AbortSignal.timeout(5000) }).then(
      (r) => ({ status: r.status, error: undefined as string | undefined }),
      (err: Error) => ({ status: 0, error: String((err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.name) }),
    );
    // A read over TLS with the CA alone: what HAProxy's :5000 check and a monitoring scrape do.
    const read = await httpsPost(url('/patroni'), '', { ca: admin.ca }, { method: 'GET' });
    const attempts = {
      'reload, password, no certificate': await httpsPost(url('/reload'), '', { ca: admin.ca }, { headers: basic }),
      'config, password, no certificate': await httpsPost(url('/config'), change, { ca: admin.ca }, { method: 'PATCH', headers: basic }),
      "config, password, another CA's certificate": await httpsPost(url('/config'), change, stranger, { method: 'PATCH', headers: basic }),
      'config, the cluster certificate, no password': await httpsPost(url('/config'), change, admin, { method: 'PATCH' }),
    };
    // The positive control: the admin's certificate and the password may write (a reload changes nothing).
    const allowed = await httpsPost(url('/reload'), '', admin, { headers: basic });
    seen.push(
      `${m.name}: http ${plain.status} ${plain.error ?? ''}; read over TLS ${read.status}; ${Object.entries(attempts)
        .map(([what, r]) => `${what} ${r.status} ${r.error ?? ''}`)
        .join('; ')}; admin with password ${allowed.status}`,
    );
    assert.notEqual(plain.status, 200, `plain http on ${m.name}`);
    assert.equal(read.status, 200, `a read over TLS on ${m.name}`);
    assert.equal(attempts['reload, password, no certificate'].status, 403, `POST /reload with the password but no certificate on ${m.name}`);
    assert.equal(attempts['config, password, no certificate'].status, 403, `PATCH /config with the password but no certificate on ${m.name}`);
    assert.equal(attempts["config, password, another CA's certificate"].status, 0, `another CA's certificate on ${m.name}: refused at the handshake`);
    assert.equal(attempts['config, the cluster certificate, no password'].status, 401, `PATCH /config without the password on ${m.name}`);
    assert.equal(allowed.status, 202, `the admin with the password on ${m.name} (the control)`);
  }
  for (const line of seen) console.log(`# patroni: ${line}`);
  for (const m of dbs) assert.equal(await lag(m), before, `maximum_lag_on_failover unchanged, as ${m.name} reads it`);
});

const notListening = (report: DoctorReport) =>
  finding(report, 'app-tls', active, new RegExp(`^nothing listens on TCP port ${REFAPP_HTTPS_PORT} on ${active}, the active machine`));

test('app HTTPS: CertificateFilePath disabled by a leading underscore (the seed case), on the active machine: the port closes after the reload', async () => {
  await withSettings(
    active,
    (t) => t.replace('"CertificateFilePath"', '"_CertificateFilePath"'),
    (report) => {
      const f = finding(
        report,
        'app-tls',
        active,
        /^Https\._CertificateFilePath in \/etc\/vigil\/refapp\/appsettings\.json:\d+ on .* is disabled by a leading underscore; rename _CertificateFilePath to CertificateFilePath$/,
      );
      assert.match(
        f.fix,
        new RegExp(
          `rename _CertificateFilePath to CertificateFilePath in /etc/vigil/refapp/appsettings\\.json on ${active}; then restart vigil-refapp\\.service: (VIGIL_LAB_ID=\\d )?vigil lab exec ${active} -- systemctl restart vigil-refapp\\.service`,
        ),
      );
      assert.match(notListening(report).fix, /^put right the findings above about \/etc\/vigil\/refapp\/appsettings\.json and the files it names/);
    },
  );
});

test('app HTTPS: a wrong key path on the standby, named with the file, the key and the restart after a failover', async () => {
  await withSettings(
    standby,
    (t) => t.replace(KEY, '/etc/vigil/refapp/tls/refapp-old.key'),
    (report) => {
      const f = finding(
        report,
        'app-tls',
        standby,
        new RegExp(
          `^Https\\.KeyFilePath in /etc/vigil/refapp/appsettings\\.json:\\d+ on ${standby} names /etc/vigil/refapp/tls/refapp-old\\.key, which does not exist on ${standby}$`,
        ),
      );
      assert.match(f.fix, /vigil-refapp\.service runs only on the active machine: it reads the file when it starts on .* after a failover/);
    },
  );
});

test('app HTTPS: a Windows path (C:\\...) on the standby', async () => {
  await withSettings(
    standby,
    (t) => t.replace(PATHS.refappTlsCert, 'C:\\\\ServiceOps\\\\tls\\\\refapp.pem'),
    (report) => {
      const f = finding(
        report,
        'app-tls',
        standby,
        /^Https\.CertificateFilePath in \/etc\/vigil\/refapp\/appsettings\.json:\d+ on .* is C:\\ServiceOps\\tls\\refapp\.pem, a Windows path: .* runs Linux/,
      );
      assert.match(f.fix, /set Https\.CertificateFilePath to the certificate's path on .*, e\.g\. \/etc\/vigil\/refapp\/tls\/refapp\.pem/);
    },
  );
});

test('app HTTPS: the port not listening while the settings are right: the fix is the restart', async () => {
  await withSettings(
    active,
    (t) => t.replace(`"Port": ${REFAPP_HTTPS_PORT}`, `"Port": ${REFAPP_HTTPS_PORT + 1}`),
    (report) => {
      assert.deepEqual(
        report.findings.filter((f) => f.check === 'app-tls').map((f) => f.what),
        [notListening(report).what],
      );
      assert.match(
        notListening(report).fix,
        new RegExp(`^restart vigil-refapp\\.service: (VIGIL_LAB_ID=\\d )?vigil lab exec ${active} -- systemctl restart vigil-refapp\\.service`),
      );
    },
  );
});

test("app HTTPS: a key file the service's user cannot read (mode 000; the unit's root may not bypass file modes)", async () => {
  const key = hostPathOf(active, KEY);
  const before = (await stat(key)).mode & 0o7777;
  await chmod(key, 0o000);
  try {
    await reloadApp(active, false);
    const { code, report } = await doctor();
    assert.equal(code, 1);
    const f = finding(
      report,
      'app-tls',
      active,
      new RegExp(
        `^/etc/vigil/refapp/tls/refapp\\.key \\(Https\\.KeyFilePath in /etc/vigil/refapp/appsettings\\.json\\) on ${active} is not readable by root, the user vigil-refapp\\.service runs as`,
      ),
    );
    assert.match(f.fix, new RegExp(`vigil lab exec ${active} -- chmod u\\+r /etc/vigil/refapp/tls/refapp\\.key .*systemctl restart vigil-refapp\\.service`));
    notListening(report);
  } finally {
    await chmod(key, before);
    await reloadApp(active, true);
  }
});

test('app HTTPS: a key that does not belong to the certificate', async () => {
  const other = '/etc/vigil/refapp/tls/other.key';
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  await writeFile(hostPathOf(standby, other), pem, { mode: 0o600 });
  try {
    await withSettings(
      standby,
      (t) => t.replace(KEY, other),
      (report) => {
        const f = finding(
          report,
          'app-tls',
          standby,
          new RegExp(
            `^the private key ${other} \\(Https\\.KeyFilePath in /etc/vigil/refapp/appsettings\\.json\\) on ${standby} does not belong to the certificate /etc/vigil/refapp/tls/refapp\\.pem`,
          ),
        );
        assert.match(f.fix, /set Https\.KeyFilePath to the certificate's own key/);
      },
    );
  } finally {
    await rm(hostPathOf(standby, other), { force: true });
  }
});

test("nginx running on the standby (the distribution's nginx.service, started by hand)", async () => {
  const nginx = (action: string) => labRun(standby, ['systemctl', action, 'nginx.service']);
  assert.equal((await nginx('start')).code, 0, 'systemctl start nginx.service');
  try {
    await waitFor('nginx on the standby', async () => ((await listening(address(standby), lab.cluster.application.port)) ? true : undefined), 10_000, 100);
    const { code, report } = await doctor();
    assert.equal(code, 1);
    const f = finding(report, 'services', standby, new RegExp(`nginx \\(pid \\d+\\) listens on port ${lab.cluster.application.port} on ${standby}, a standby`));
    assert.match(f.fix, new RegExp(`vigil lab exec ${standby} -- systemctl disable --now nginx\\.service`));
  } finally {
    await nginx('stop');
    await waitFor(
      'the stray nginx to be gone',
      async () => ((await listening(address(standby), lab.cluster.application.port)) ? undefined : true),
      10_000,
      100,
    );
  }
});

test('another database password in one application config file, without printing either', async () => {
  const file = hostPathOf(standby, PATHS.refappConfig);
  const original = await readFile(file, 'utf8');
  const planted = 'planted-Wrong-Password-42';
  assert.match(original, /^spring\.datasource\.password=/m);
  await writeFile(file, original.replace(/^spring\.datasource\.password=.*$/m, `spring.datasource.password=${planted}`), { mode: 0o600 });
  try {
    const { code, report } = await doctor();
    assert.equal(code, 1);
    finding(
      report,
      'passwords',
      standby,
      /spring\.datasource\.password in \/etc\/vigil\/refapp\/application\.properties:\d+ on .* differs from the secrets file/,
    );
    const text = JSON.stringify(report);
    assert.ok(!text.includes(planted) && !text.includes(lab.secrets.appDbPassword), 'no password in the report');
  } finally {
    await writeFile(file, original, { mode: 0o600 });
  }
});

test("wrong ownership of one of Vigil's directories", async () => {
  const dir = hostPathOf(standby, PATHS.pkiDir);
  const before = await stat(dir);
  await run('chown', ['nobody:nogroup', dir]);
  try {
    const { code, report } = await doctor();
    assert.equal(code, 1);
    const f = finding(report, 'ownership', standby, /\/etc\/vigil\/pki on .* is owned by nobody:nogroup; it must be root:root/);
    assert.match(f.fix, new RegExp(`vigil lab exec ${standby} -- chown root:root /etc/vigil/pki`));
  } finally {
    await run('chown', [`${before.uid}:${before.gid}`, dir]);
  }
});

test('a closed port (vigil lab block), found from the machines that cannot reach it', async () => {
  const primary = (await findPrimary(lab.cluster))!.name;
  const replica = withRole(lab.cluster, 'db').find((m) => m.name !== primary)!.name;
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, ['bin/vigil.js', 'lab', 'block', replica, String(lab.cluster.database.port)], (err) => (err ? reject(err) : resolve())),
  );
  try {
    const { code, report } = await doctor();
    assert.equal(code, 1);
    const f = finding(
      report,
      'ports',
      replica,
      new RegExp(
        `TCP port ${lab.cluster.database.port} \\(PostgreSQL\\) on ${replica} is not reachable from .*${primary}.*: connections time out: a firewall drops them`,
      ),
    );
    assert.match(f.fix, /vigil lab heal/);
  } finally {
    await labHeal();
  }
});

test('a stopped etcd: found quickly, named with the command that starts it', async () => {
  const etcd = withRole(lab.cluster, 'etcd')[0]!;
  await labStopUnit(etcd.name, 'etcd'); // systemctl stop: a kill would be restarted by systemd within a second
  try {
    await waitFor('etcd to be gone', async () => ((await listening(etcd.address, 2379)) ? undefined : true), 10_000, 100);
    const { code, report, ms } = await doctor();
    assert.equal(code, 1);
    const f = finding(report, 'etcd', etcd.name, /does not answer/);
    assert.match(f.fix, new RegExp(`vigil lab start ${etcd.name} etcd`));
    finding(report, 'etcd', null, /no quorum: 0 of 1/);
    // Every machine is still checked, and what needs etcd is skipped, not stalled.
    assert.ok(report.machines.every((m) => m.reachable));
    assert.ok(ms < 45_000, `doctor took ${Math.round(ms)} ms with etcd down`);
  } finally {
    await labStart(etcd.name, 'etcd');
  }
});

test('with every fault undone, the lab is healthy again', async () => {
  await labSettled(lab);
  // The agents and HAProxy need a moment after etcd returns: ask until doctor agrees (or give up).
  const last = await waitFor(
    'a healthy doctor report',
    async () => {
      const r = await doctor();
      return r.code === 0 ? r : undefined;
    },
    90_000,
    2000,
  ).catch(async () => doctor());
  assert.equal(last.report.summary.failures, 0);
  assert.equal(last.code, 0);
});
