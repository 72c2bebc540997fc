/**
 * `vigil doctor -c FILE` over the real SSH transport: a cluster file whose five machines are
 * loopback addresses served by one test sshd (src/testing/sshd.ts), with the admin key and
 * pinned host keys beside it. Nothing of Vigil is installed there, so doctor must reach every
 * machine, run its probes over SSH, and report what is missing with systemd fixes, within its
 * deadlines, and without any secret in the report.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { caFiles, createClusterCa, issueCertificate, writePki } from '../pki/ca.ts';
import { loopbackAddresses, secretsFixture } from '../testing/clusters.ts';
import { ADMIN_KEY_FILE, KNOWN_HOSTS_FILE, generateAdminKey, pinHostKey } from '../remote/ssh.ts';
import { sshdUnavailable, startTestSshd, type TestSshd } from '../testing/sshd.ts';
import { runDoctor } from './doctor.ts';
import { doctorTarget } from './target.ts';
import type { DoctorReport } from './types.ts';

const skip = sshdUnavailable();

describe('doctor over SSH against machines with nothing installed', { skip, timeout: 120_000 }, () => {
  let sshd: TestSshd;
  let dir = '';
  let report: DoctorReport;
  const secrets = secretsFixture();
  const addresses = loopbackAddresses(70);

  before(async () => {
    sshd = await startTestSshd({ listen: Object.values(addresses) });
    dir = await mkdtemp(join(tmpdir(), 'vigil-doctor-ssh-'));
    const file = join(dir, 'vigil.yaml');
    await writeFile(
      file,
      stringify({
        cluster: { name: 'sshtest' },
        topology: 'distributed',
        machines: Object.fromEntries(Object.entries(addresses).map(([name, address]) => [name, { address, sshPort: sshd.port }])),
        application: { passwordFiles: [{ path: '/etc/vigil/refapp/application.properties', format: 'properties', key: 'spring.datasource.password' }] },
      }),
    );
    await writeFile(join(dir, 'vigil.secrets.yaml'), stringify(secrets), { mode: 0o600 });
    const admin = generateAdminKey('vigil-doctor-test');
    await mkdir(join(dir, 'ssh'), { mode: 0o700 });
    await writeFile(join(dir, ADMIN_KEY_FILE), admin.privateKey, { mode: 0o600 });
    await writeFile(sshd.authorizedKeys, `${admin.publicKey}\n`);
    for (const [machine, address] of Object.entries(addresses)) {
      await pinHostKey({ machine, address, port: sshd.port, user: 'root' }, join(dir, KNOWN_HOSTS_FILE), { confirm: () => true });
    }
    const ca = await createClusterCa({ clusterName: 'sshtest' });
    const cert = await issueCertificate(ca, { commonName: 'admin', ipAddresses: ['127.0.0.1'], usage: 'client' });
    await writePki(join(dir, 'pki'), { ...caFiles(ca), 'admin.pem': cert.certPem, 'admin.key': cert.keyPem });
    report = await runDoctor({ ...(await doctorTarget({ config: file })), probeTimeoutMs: 3000, connectTimeoutMs: 1000 });
  });

  after(async () => {
    await sshd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reaches every machine over SSH and checks it as a systemd machine', () => {
    assert.equal(report.platform, 'systemd');
    assert.deepEqual(
      report.machines.map((m) => [m.name, m.reachable]),
      Object.keys(addresses).map((n) => [n, true]),
    );
    for (const m of report.machines)
      assert.ok(
        m.checks.some((c) => c.check === 'ownership' && c.status === 'fail'),
        `${m.name}: ${JSON.stringify(m.checks)}`,
      );
    assert.ok(report.durationMs < 60_000, `${report.durationMs} ms`);
  });

  it('reports what is missing with the fixes for real machines', () => {
    const f = report.findings;
    assert.ok(
      f.some((x) => x.check === 'ownership' && x.machine === 'db1' && /\/var\/lib\/vigil\/postgresql\/data/.test(x.what) && /^vigil apply -c /.test(x.fix)),
      'missing data directory',
    );
    assert.ok(f.some((x) => x.check === 'etcd' && x.machine === 'observer' && x.fix.startsWith('on observer: systemctl start vigil-etcd.service')));
    assert.ok(f.some((x) => x.check === 'ports' && x.machine === 'observer' && /nothing listens on TCP port 2379/.test(x.what)));
    assert.ok(f.some((x) => x.check === 'passwords' && x.machine === 'app1' && /application\.properties is missing on app1/.test(x.what)));
    assert.ok(f.some((x) => x.check === 'certificates' && x.machine === 'app2' && /app2\.pem is missing/.test(x.what)));
    assert.equal(report.exitStatus, 1);
  });

  it('never puts a secret in the report', () => {
    const text = JSON.stringify(report);
    for (const v of Object.values(secrets)) if (typeof v === 'string') assert.ok(!text.includes(v));
  });
});
