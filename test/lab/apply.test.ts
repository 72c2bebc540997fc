/**
 * Bare machines to a working cluster with the commands an administrator runs:
 * `vigil lab up --bare` (five machines running only sshd and a service manager standing in for
 * systemd), `vigil init --answers` (non-interactive), `vigil plan`, `vigil apply`. Then:
 *   - plan changes nothing; a closed port stops apply at preflight with nothing changed;
 *   - a failure half-way (an application config file missing on app2) names the machine, the
 *     step and the fix, and the next apply resumes and finishes;
 *   - the cluster serves through the proxy, the database password is the same in every
 *     application config file, doctor finds nothing wrong;
 *   - a password file replaced by a symlink to /etc/shadow is refused by apply (nothing read or
 *     written through it) and reported by doctor;
 *   - :443 answers with a certificate the cluster CA issued for the proxy's address and name;
 *   - a second apply and a plan report no change;
 *   - a changed host key and a refused admin key stop apply at connect, before anything changes;
 *   - a machine down stops apply with SSH_UNREACHABLE; once it is back, apply converges;
 *   - the observer issue's application failover scenarios pass on this cluster;
 *   - a health check left paused in HAProxy (an interrupted apply) is found by doctor and resumed by apply;
 *   - a change of the cluster file restarts the agents one at a time without a failed request;
 *   - HAProxy reloads keep the standby in MAINT and lose no request;
 *   - your own certificate for :443 replaces the CA's (written, HAProxy reloaded, then no change);
 *   - a Patroni that hangs on the primary is fenced by its agent through the service manager.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { lstat, mkdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, parseDocument, stringify } from 'yaml';
import { withRole } from '../../src/config/schema.ts';
import { comparePasswordFile } from '../../src/facts/password-files.ts';
import { labUpBare } from '../../src/lab/bare.ts';
import { labAgents, labBlock, labDown, labKill, labRevive, labUnblock, openLab, type LabHandle } from '../../src/lab/lab.ts';
import { LAB_DIR, clusterFilePath, hostPathOf } from '../../src/lab/paths.ts';
import { Checker } from '../../src/lab/checker.ts';
import { HttpProbe } from '../../src/lab/probe.ts';
import { PATHS } from '../../src/layout/paths.ts';
import { remoteRuntime } from '../../src/apply/remote.ts';
import { LabShell } from '../../src/lab/shell.ts';
import { createClusterCa, issueCertificate } from '../../src/pki/ca.ts';
import { UNITS } from '../../src/layout/units.ts';
import { createKeyPair } from '../../src/sync/keys.ts';
import { runDbFault } from '../../src/lab/db-faults.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { failoverTests } from './failover-scenarios.ts';
import { vigil } from './run-vigil.ts';
import { printJournals, unitJournal } from './journal.ts';

/** An application config file of the kind the seed edits by hand, planted on the app machines with a wrong password. */
const APP_ENV = '/etc/vigil/app/db.env';
const SITE_NAME = 'servicedesk.lab.test';

/** A GET over HTTPS that trusts only `caPem` and checks the certificate names the address: status and the certificate served. */
function httpsGet(url: string, caPem: string): Promise<{ status: number; cert: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: caPem, timeout: 5000 }, (res) => {
      const cert = (res.socket as TLSSocket).getPeerCertificate();
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, cert }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Lines of apply's output that report a change or a look at a machine (`NAME  step: ...`). */
const machineLines = (out: string) => out.split('\n').filter((l) => /^(observer|app1|app2|db1|db2) +[a-z-]+: /.test(l));

describe('bare machines to a cluster: vigil init, plan and apply', () => {
  let lab: LabHandle;
  let probe: HttpProbe | undefined;
  const cfg = clusterFilePath();

  before(async () => {
    await labDown();
    const answersFile = await labUpBare({ topology: 'distributed' }, (l) => console.log(`# lab: ${l}`));
    const answers = parse(await readFile(answersFile, 'utf8')) as Record<string, unknown>;
    answers.application = {
      ...(answers.application as object),
      passwordFiles: [
        { path: PATHS.refappConfig, format: 'properties', key: 'spring.datasource.password' },
        { path: APP_ENV, format: 'shell', key: 'DB_PASSWORD' },
      ],
    };
    answers.proxy = { ...(answers.proxy as object), tlsDnsNames: [SITE_NAME] };
    await writeFile(answersFile, stringify(answers), { mode: 0o600 });
    // init writes into the lab's directory, so the lab's helpers (labAgents, labSettled) find the cluster and the admin certificate.
    const init = await vigil(['init', '--answers', answersFile, '--accept-host-keys', '-d', LAB_DIR]);
    assert.equal(init.code, 0, init.out);
    await plant('app1', '# the application\'s database settings\nDB_HOST=10.213.0.10\nexport DB_PASSWORD="stale-password"\n');
    await plant('app2', 'DB_PASSWORD=another-stale-one\n');
  });
  after(async () => {
    await probe?.stop();
    await labDown();
  });

  /** `vigil apply` that must succeed; when it does not, what the daemons logged meanwhile is printed first, so CI's output says why. */
  async function applyOk(extra: string[] = [], opts: { stdout?: boolean } = {}): Promise<{ code: number; out: string; stdout: string }> {
    const from = Date.now();
    const r = await vigil(['apply', '-c', cfg, ...extra], opts);
    if (r.code !== 0) {
      const agents = ['app1', 'app2', 'db1', 'db2', 'observer'].map((m): [string, string] => [m, UNITS.agent]);
      const deadman = ['app1', 'app2'].map((m): [string, string] => [m, UNITS.deadman]);
      await printJournals([...agents, ...deadman, ['db1', UNITS.patroni], ['db2', UNITS.patroni], ['observer', UNITS.observer]], from, Date.now());
    }
    assert.equal(r.code, 0, r.out);
    return r;
  }

  async function plant(machine: string, text: string): Promise<void> {
    const path = hostPathOf(machine, APP_ENV);
    await rm(path, { force: true });
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, text, { mode: 0o640 });
  }

  it('plan lists the work on bare machines and changes nothing', async () => {
    const r = await vigil(['plan', '-c', cfg, '--json']);
    assert.equal(r.code, 0, r.out);
    const report = JSON.parse(r.stdout) as { changes: { machine: string; step: string; what: string }[] };
    const on = (m: string, step: string) => report.changes.filter((c) => c.machine === m && c.step === step).map((c) => c.what);
    assert.ok(
      on('observer', 'files').some((w) => w.startsWith(`write ${PATHS.etcdConfig}`)),
      r.out,
    );
    assert.ok(on('db1', 'services').includes('start vigil-patroni.service'), r.out);
    assert.ok(
      on('app1', 'passwords').some((w) => w.includes(APP_ENV)),
      r.out,
    );
    assert.match(r.out, /plan: \d+ change\(s\) on 5 machine\(s\)/);
    await assert.rejects(readFile(hostPathOf('observer', PATHS.etcdConfig)), 'plan wrote nothing');
  });

  it('a closed port stops apply at preflight, naming the machines and the fix, before anything changes', async () => {
    await labBlock('db2', 5432);
    try {
      const r = await vigil(['apply', '-c', cfg]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /error \[APPLY\]/);
      assert.match(r.out, /db1, step preflight \(ports\): db1 cannot reach db2:5432 \(PostgreSQL\): no answer/);
      assert.match(r.out, /fix: open TCP port 5432 on db2 for db1/);
      await assert.rejects(readFile(hostPathOf('observer', PATHS.etcdConfig)), 'nothing written');
    } finally {
      await labUnblock('db2');
    }
  });

  it('stops at the machine and step that fail, with the fix; the next apply resumes and verifies the cluster', async () => {
    // app2 lacks the application config file the cluster file lists.
    await rm(hostPathOf('app2', APP_ENV));
    const first = await vigil(['apply', '-c', cfg]);
    assert.equal(first.code, 1, first.out);
    assert.match(first.out, /app2, step passwords: app2 \/etc\/vigil\/app\/db\.env: the application config file is missing/);
    assert.match(first.out, /fix: install the application on app2 first/);
    assert.doesNotMatch(first.out, /stale-password/);
    await readFile(hostPathOf('observer', PATHS.etcdConfig)); // the other machines got their files

    await plant('app2', 'DB_PASSWORD=another-stale-one\n');
    const started = performance.now();
    const second = await vigil(['apply', '-c', cfg], { stdout: true });
    const seconds = (performance.now() - started) / 1000;
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, /apply: \d+ change\(s\) on 5 machine\(s\); cluster verified in/);
    assert.match(second.out, /verify: http:\/\/10\.213\.\d+\.10:80\/health answers 200 through HAProxy/);
    console.log(`# resumed apply to a verified cluster: ${seconds.toFixed(1)} s`);

    lab = await openLab();
    const secrets = lab.secrets;
    for (const m of ['app1', 'app2']) {
      for (const f of lab.cluster.application.passwordFiles) {
        const text = await readFile(hostPathOf(m, f.path), 'utf8');
        assert.equal(comparePasswordFile(f, text, secrets.appDbPassword).status, 'same', `${m} ${f.path}`);
      }
    }
    assert.match(await readFile(hostPathOf('app1', APP_ENV), 'utf8'), /^DB_HOST=10\.213\.0\.10$/m, 'the other lines are kept');
  });

  it('serves the application and doctor finds nothing wrong', async () => {
    const proxy = withRole(lab.cluster, 'proxy')[0]!;
    const res = await fetch(`http://${proxy.address}:${lab.cluster.proxy.httpPort}/api/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'installed by vigil apply' }),
    });
    assert.equal(res.status, 201);
    const doctor = await vigil(['doctor', '-c', cfg]);
    assert.equal(doctor.code, 0, doctor.out);
  });

  it('a password file replaced by a symlink to /etc/shadow: apply refuses and names it, /etc/shadow and the link stay as they were, doctor reports it (H3)', async () => {
    // The application's account owns its config files: it can put a link where one was.
    const link = hostPathOf('app1', APP_ENV);
    const shadow = hostPathOf('app1', '/etc/shadow');
    const shadowBefore = await readFile(shadow);
    const shadowStat = await stat(shadow);
    const saved = await readFile(link);
    await rm(link);
    await symlink('/etc/shadow', link);
    try {
      const r = await vigil(['apply', '-c', cfg]);
      assert.equal(r.code, 1, r.out);
      assert.match(
        r.out,
        /app1, step passwords: app1 \/etc\/vigil\/app\/db\.env: is a symbolic link \(to \/etc\/shadow\): apply runs as root and does not follow links/,
      );
      assert.match(r.out, /fix: replace the link with the real file/);
      for (const line of shadowBefore.toString('utf8').split('\n').filter(Boolean)) assert.ok(!r.out.includes(line), 'nothing of /etc/shadow in the output');
      assert.deepEqual(await readFile(shadow), shadowBefore, '/etc/shadow unchanged');
      const after = await stat(shadow);
      assert.deepEqual([after.mode, after.uid, after.gid, after.ino], [shadowStat.mode, shadowStat.uid, shadowStat.gid, shadowStat.ino]);
      assert.equal(await readlink(link), '/etc/shadow', 'the link unchanged');
      assert.ok((await lstat(link)).isSymbolicLink());
      const doctor = await vigil(['doctor', '-c', cfg]);
      assert.notEqual(doctor.code, 0, doctor.out);
      assert.match(doctor.out, /\/etc\/vigil\/app\/db\.env on app1 is a symbolic link \(to \/etc\/shadow\)/);
    } finally {
      await rm(link, { force: true });
      await writeFile(link, saved, { mode: 0o640 });
    }
  });

  it(':443 answers with the certificate apply issued from the cluster CA for the proxy address and name', async () => {
    const proxy = withRole(lab.cluster, 'proxy')[0]!;
    const caPem = await readFile(join(LAB_DIR, 'pki', 'ca.pem'), 'utf8');
    const r = await httpsGet(`https://${proxy.address}:${lab.cluster.proxy.httpsPort}${lab.cluster.application.healthPath}`, caPem);
    assert.equal(r.status, 200);
    assert.match(r.cert.subjectaltname ?? '', new RegExp(`DNS:${SITE_NAME.replaceAll('.', '\\.')}`));
    assert.match(r.cert.subjectaltname ?? '', new RegExp(`IP Address:${proxy.address.replaceAll('.', '\\.')}`));
  });

  it('a second apply, and a plan, report no change', async () => {
    const again = await applyOk(['--json']);
    assert.deepEqual((JSON.parse(again.stdout) as { changes: unknown[] }).changes, [], again.out);
    assert.match(again.out, /apply: no change; every machine is as the cluster file describes/);
    const plan = await vigil(['plan', '-c', cfg]);
    assert.equal(plan.code, 0, plan.out);
    assert.match(plan.out, /plan: no change/);
  });

  it('a changed host key, or an admin key no longer accepted, stops apply at connect before anything changes', async () => {
    const key = hostPathOf('db1', '/etc/ssh/ssh_host_ed25519_key');
    const saved = await Promise.all([readFile(key), readFile(`${key}.pub`)]);
    const restartSshd = async () => assert.equal((await new LabShell('db1').exec(['systemctl', 'restart', 'ssh.service'], { timeoutMs: 60_000 })).code, 0);
    await rm(key);
    await rm(`${key}.pub`);
    await createKeyPair(key, 'host@db1-reinstalled');
    await restartSshd(); // as after a reinstall: sshd offers the new key
    try {
      const r = await vigil(['apply', '-c', cfg]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /db1, step connect: db1 \(root@10\.213\.\d+\.21:22\): the SSH host key is not the one pinned/);
      assert.equal((r.out.match(/SHA256:[A-Za-z0-9+/]+/g) ?? []).length >= 2, true, 'the pinned and the offered fingerprint');
      assert.deepEqual(machineLines(r.out), [], r.out);
    } finally {
      await writeFile(key, saved[0], { mode: 0o600 });
      await writeFile(`${key}.pub`, saved[1]);
      await restartSshd();
    }
    const authorized = hostPathOf('app2', '/root/.ssh/authorized_keys');
    const keys = await readFile(authorized);
    await writeFile(authorized, '');
    try {
      const r = await vigil(['apply', '-c', cfg]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /app2, step connect: app2 \(root@10\.213\.\d+\.12:22\): the admin key was refused for root/);
      assert.match(r.out, /ssh-copy-id -i /);
      assert.deepEqual(machineLines(r.out), [], r.out);
    } finally {
      await writeFile(authorized, keys);
    }
    const back = await applyOk();
    assert.match(back.out, /apply: no change/);
  });

  it('a machine that is down stops apply with SSH_UNREACHABLE; once it is back, apply converges', async () => {
    await labKill('db2');
    const down = await vigil(['apply', '-c', cfg]);
    assert.equal(down.code, 1, down.out);
    assert.match(down.out, /db2, step connect/);
    assert.match(down.out, /db2 \(root@10\.213\.\d+\.22:22\)/);
    await labRevive('db2'); // a reboot: the service manager starts the enabled units
    const back = await applyOk();
    assert.match(back.out, /apply: no change/, 'a rebooted machine comes back as apply left it');
  });

  describe('application failover on the applied cluster', () => {
    let checker: Checker | undefined;
    before(async () => {
      const proxy = withRole(lab.cluster, 'proxy')[0]!;
      // The tests after these read which machine serves, and whether a request failed, from this probe.
      probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}${lab.cluster.application.healthPath}`);
      probe.start();
      checker = new Checker(lab, { dbWriter: true });
      await checker.start();
    });
    after(async () => {
      await checker?.stop();
    });
    failoverTests('applied distributed', () => ({ lab, checker: checker! }));
  });

  it('a health check left paused in HAProxy is found by doctor and resumed by the next apply', async () => {
    const active = probe!.current();
    assert.ok(active, 'the application answers');
    const runtime = remoteRuntime(new LabShell('observer'));
    await runtime.disableHealth('app', active); // what an apply killed while restarting the active agent leaves
    const doctor = await vigil(['doctor', '-c', cfg]);
    assert.equal(doctor.code, 1, doctor.out);
    assert.match(doctor.out, new RegExp(`HAProxy's health check of ${active} is paused on observer`));
    const r = await applyOk();
    assert.match(r.out, new RegExp(`observer +services: resume HAProxy's health check of ${active}`));
    assert.equal((await runtime.servers('app')).find((x) => x.server === active)?.checks, 'enabled');
  });

  it('a change of the cluster file restarts the agents one at a time, the active one last with its check paused: no failed request', async () => {
    const served = probe!.current()!;
    await writeFile(cfg, `${await readFile(cfg, 'utf8')}# a comment: the cluster file changed, so every agent restarts\n`);
    const t0 = performance.now();
    const r = await applyOk();
    assert.equal(
      (r.out.match(new RegExp(`restart ${UNITS.agent.replaceAll('.', '\\.')} \\(its files changed; one machine at a time\\)`, 'g')) ?? []).length,
      4,
      r.out,
    );
    assert.match(r.out, new RegExp(`${served} +services: HAProxy's health check of ${served} paused on observer while the active machine's agent restarts`));
    await new Promise((res) => setTimeout(res, 3000)); // HAProxy checks the active agent again
    const answers = probe!.answers.filter((a) => a.atMs > t0);
    assert.ok(answers.length > 50, `the probe kept asking (${answers.length} answers)`);
    assert.deepEqual(answers.filter((a) => a.node === null).length, 0, 'no failed request while the agents restarted');
    assert.deepEqual([...new Set(answers.map((a) => a.node))], [served], 'one machine served throughout');
  });

  it("the active agent's restart outlasts its lease (a slow start): the application keeps serving, no failover", async () => {
    // Without the restart grace the dead-man switch stops the application one lease (3 s) after the
    // old agent stopped, and the observer moves it: what a loaded machine did to apply in CI.
    const served = probe!.current()!;
    const shell = new LabShell(served);
    const dropIn = `/etc/systemd/system/${UNITS.agent}.d/slow-start.conf`;
    const epochOf = async () => (await labAgents(3000)).get(served)?.epoch ?? null;
    const epoch = await epochOf();
    assert.ok(epoch !== null, `${served}'s agent answers with its epoch`);
    await shell.exec(['mkdir', '-p', `/etc/systemd/system/${UNITS.agent}.d`]);
    await shell.writeFile(dropIn, '[Service]\n# test/lab/apply.test.ts: a start slower than a lease\nExecStartPre=/bin/sleep 5\n');
    await shell.exec(['systemctl', 'daemon-reload']);
    try {
      await writeFile(cfg, `${await readFile(cfg, 'utf8')}# another change: the agents restart, the active one slowly\n`);
      const t0 = performance.now();
      const from = Date.now();
      const r = await applyOk();
      assert.match(r.out, new RegExp(`${served} +services: restart ${UNITS.agent.replaceAll('.', '\\.')}`));
      await new Promise((res) => setTimeout(res, 3000)); // HAProxy checks the active agent again
      const answers = probe!.answers.filter((a) => a.atMs > t0);
      assert.deepEqual(answers.filter((a) => a.node === null).length, 0, 'no failed request across the slow restart');
      assert.deepEqual([...new Set(answers.map((a) => a.node))], [served], 'one machine served throughout');
      assert.equal(await epochOf(), epoch, 'no failover: the epoch did not move');
      const said = (await unitJournal(served, UNITS.agent, from)).map((l) => l.message);
      assert.ok(
        said.some((m) => m.includes('"restart-grace"')),
        `the old agent gave the grace:\n${said.slice(-20).join('\n')}`,
      );
      assert.equal((await shell.exec(['test', '-e', PATHS.agentRestartMark])).code, 1, 'apply removed its mark');
    } finally {
      await shell.exec(['rm', '-f', dropIn]);
      await shell.exec(['systemctl', 'daemon-reload']);
    }
  });

  it('HAProxy reloads keep the fencing (MAINT) and lose no request', async () => {
    const served = probe!.current()!;
    const observer = new LabShell('observer');
    const runtime = remoteRuntime(observer);
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) {
      const r = await observer.exec(['systemctl', 'reload', UNITS.haproxy], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      // The new worker starts from the saved state: the standby is still in MAINT, before the observer could fence it again.
      const servers = await runtime.servers('app');
      assert.deepEqual(
        servers.map((x) => [x.server, x.admin]).sort(),
        [
          ['app1', served === 'app1' ? 'ready' : 'maint'],
          ['app2', served === 'app2' ? 'ready' : 'maint'],
        ],
        `reload ${i + 1}`,
      );
      await new Promise((res) => setTimeout(res, 1000));
    }
    const answers = probe!.answers.filter((a) => a.atMs > t0);
    assert.deepEqual(answers.filter((a) => a.node === null).length, 0, 'no failed request across the reloads');
    assert.deepEqual([...new Set(answers.map((a) => a.node))], [served]);
  });

  it("your own certificate for :443 replaces the cluster CA's: written to the proxy, HAProxy reloaded, then no change", async () => {
    const proxy = withRole(lab.cluster, 'proxy')[0]!;
    const corporate = await createClusterCa({ clusterName: 'corporate' });
    const site = await issueCertificate(corporate, { commonName: SITE_NAME, ipAddresses: [proxy.address], dnsNames: [SITE_NAME], usage: 'server' });
    await mkdir(join(LAB_DIR, 'tls'), { recursive: true });
    await writeFile(join(LAB_DIR, 'tls', 'site.crt'), site.certPem);
    await writeFile(join(LAB_DIR, 'tls', 'site.key'), site.keyPem, { mode: 0o600 });
    const doc = parseDocument(await readFile(cfg, 'utf8'));
    doc.setIn(['proxy', 'tlsCertificate'], 'tls/site.crt');
    doc.setIn(['proxy', 'tlsKey'], 'tls/site.key');
    doc.deleteIn(['proxy', 'tlsDnsNames']);
    await writeFile(cfg, doc.toString());

    const r = await applyOk();
    assert.match(r.out, new RegExp(`observer +tls: write ${PATHS.tlsBundle} \\(content differs\\)`));
    assert.match(r.out, new RegExp(`observer +services: reload ${UNITS.haproxy.replaceAll('.', '\\.')}`));
    assert.doesNotMatch(r.out, /BEGIN|PRIVATE KEY/);
    await waitForHttps(`https://${proxy.address}:${lab.cluster.proxy.httpsPort}${lab.cluster.application.healthPath}`, corporate.certPem);
    const again = await applyOk();
    assert.match(again.out, /apply: no change/);
  });

  it("Patroni hangs on the primary: its agent (the artifact, under the machine's service manager) fences the stale primary with systemctl kill, Restart= brings Patroni back as a replica; nothing lost", async () => {
    await labSettled(lab);
    const r = await runDbFault(lab, 'patroni-pause', { holdMs: 20_000, say: (l) => console.log(`# ${l}`) });
    console.log(`# ${JSON.stringify({ ...r, missing: r.missing.length, proxyLog: undefined })}`);
    assert.deepEqual(r.missing, [], `every acknowledged write is in the database (${r.missing.length} of ${r.acked} missing)`);
    assert.ok(r.mostPrimariesUp <= 1, `at most one running primary up behind :5000 (saw ${r.mostPrimariesUp})`);
    assert.equal(r.oldAcksAfterNew, 0);
    assert.equal(r.staleAtEnd, false, 'the stale PostgreSQL was ended before Patroni resumed');
    assert.ok(r.fences >= 1, `the agent fenced it (${r.fences} db-fenced lines)`);
    assert.equal(r.notHealed, null, "the old primary is back as the synchronous standby, its Patroni started again by the unit's Restart=");
    const journal = (await unitJournal(r.old, UNITS.patroni)).map((l) => l.message).join('\n');
    assert.match(journal, /vigil-patroni\.service: Main process exited, code=killed, status=9\/KILL/, "systemd saw the agent's SIGKILL of the unit");
  });
});

/** HAProxy's reload finishes in the background: wait until :443 serves the certificate `caPem` vouches for. */
async function waitForHttps(url: string, caPem: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await httpsGet(url, caPem).catch((err: unknown) => err as Error);
    if (!(r instanceof Error) && r.status === 200) return;
    if (Date.now() > deadline) assert.fail(`${url} does not answer 200 with the new certificate: ${r instanceof Error ? r.message : r.status}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}
