/**
 * What gatherTlsEndpoints asks of a machine, through a fake shell: the unit's credentials, the
 * settings file, each path tried with the service's own permissions (setpriv for a root unit
 * that drops the capabilities bypassing file modes), the certificate read, the key's public half
 * derived on the machine; a path in Windows form is not tried at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterFixture } from '../testing/clusters.ts';
import type { RemoteShell } from '../remote/types.ts';
import { gatherTlsEndpoints } from './gather-tls.ts';

const FILE = '/opt/app/appsettings.json';

function fakeShell(files: Record<string, string>, unreadable: string[]): { shell: RemoteShell; commands: string[][] } {
  const commands: string[][] = [];
  const shell: RemoteShell = {
    machine: 'app1',
    async exec(argv) {
      commands.push(argv);
      const ok = (stdout = '') => ({ code: 0, stdout, stderr: '' });
      const no = { code: 1, stdout: '', stderr: '' };
      if (argv[0] === 'systemctl') return ok('User=\nGroup=\nCapabilityBoundingSet=cap_chown cap_fowner\n');
      if (argv[0] === 'test') return argv[2]! in files ? ok() : no;
      if (argv[0] === 'setpriv') return unreadable.includes(argv.at(-1)!) ? no : ok();
      if (argv[0] === 'openssl') return ok('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
      throw new Error(`unexpected ${argv.join(' ')}`);
    },
    readFile: async (path) => (path in files ? Buffer.from(files[path]!) : null),
    writeFile: () => Promise.reject(new Error('read only')),
    close: async () => {},
  };
  return { shell, commands };
}

test('settings, credentials, readability as the service, the certificate and the public half of the key', async () => {
  const cluster = clusterFixture('distributed', {
    application: {
      tlsEndpoints: [{ service: 'app', port: 8443, settingsFile: FILE, certificatePathKey: 'Https.CertificateFilePath', keyPathKey: 'Https.KeyFilePath' }],
    },
  });
  const settings = '{ "Https": { "CertificateFilePath": "C:\\\\tls\\\\app.pem", "KeyFilePath": "/etc/app/app.key" } }';
  const { shell, commands } = fakeShell({ [FILE]: settings, '/etc/app/app.key': 'KEY' }, ['/etc/app/app.key']);
  const [e] = await gatherTlsEndpoints(shell, cluster, 1000);
  assert.ok(e);
  assert.equal(e.unit, 'vigil-refapp.service');
  assert.deepEqual(e.credentials, { ok: true, value: { user: 'root', group: '', bypassesPermissions: false } });
  assert.deepEqual(e.settings, { status: 'ok' });
  const cert = e.paths.find((p) => p.what === 'certificate')!;
  assert.deepEqual(cert, { what: 'certificate', key: 'Https.CertificateFilePath', lookup: { status: 'found', value: 'C:\\tls\\app.pem', line: 1 } });
  const key = e.paths.find((p) => p.what === 'key')!;
  assert.equal(key.exists, true);
  assert.deepEqual(key.readable, { ok: true, value: false });
  assert.match((key.pem as { value: string }).value, /BEGIN PUBLIC KEY/);
  assert.ok(commands.some((c) => c.join(' ') === 'setpriv --bounding-set -dac_override,-dac_read_search -- test -r /etc/app/app.key'));
  assert.ok(!commands.some((c) => c.includes('C:\\tls\\app.pem')), 'a Windows path is not tried');
  // The private key never travels: only openssl's public half is read.
  assert.ok(!commands.some((c) => c[0] === 'cat'));
});

test('a missing settings file', async () => {
  const cluster = clusterFixture('distributed', { application: { tlsEndpoints: [{ service: 'app', port: 8443, settingsFile: FILE }] } });
  const [e] = await gatherTlsEndpoints(fakeShell({}, []).shell, cluster, 1000);
  assert.deepEqual([e!.settings, e!.paths], [{ status: 'missing-file' }, []]);
});
