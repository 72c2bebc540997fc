/**
 * An operator command whose cluster state fails under it: a real etcd, found from a cluster file
 * as on an admin's machine, paused while `vigil switchover` waits for the observer. The command
 * must end with the etcd adapter's code and fix (exit 1), never "unexpected error" (exit 70).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStore, storeTls, type VigilStore } from '../etcd/store.ts';
import { createClusterCa, issueCertificate, writePki } from '../pki/ca.ts';
import { closeAll, startTestEtcd, type TestEtcd } from '../testing/etcd.ts';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
// A loopback address of this test's own: the cluster file names etcd by machine address and
// port 2379, as every cluster does.
const ETCD_HOST = '127.0.77.1';
const PASSWORD = 'Ops-test-unique-password';

let etcd: TestEtcd;
let dir: string;
let store: VigilStore;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-ops-'));
  // As a cluster's etcd: TLS, a client certificate from the cluster CA required; the command
  // presents the admin's from pki/ beside the cluster file.
  const ca = await createClusterCa({ clusterName: 'opstest' });
  const member = await issueCertificate(ca, { commonName: 'observer', ipAddresses: [ETCD_HOST], usage: 'both' });
  const admin = await issueCertificate(ca, { commonName: 'admin', ipAddresses: [], usage: 'client' });
  await writePki(join(dir, 'pki'), { 'ca.pem': ca.certPem, 'admin.pem': admin.certPem, 'admin.key': admin.keyPem });
  await writePki(join(dir, 'etcd'), { 'etcd.pem': member.certPem, 'etcd.key': member.keyPem });
  const identity = { ca: ca.certPem, cert: admin.certPem, key: admin.keyPem };
  etcd = await startTestEtcd({
    host: ETCD_HOST,
    clientPort: 2379,
    tls: { certFile: join(dir, 'etcd', 'etcd.pem'), keyFile: join(dir, 'etcd', 'etcd.key'), caFile: join(dir, 'pki', 'ca.pem'), client: identity },
  });
  await writeFile(
    join(dir, 'vigil.yaml'),
    [
      'cluster: { name: opstest }',
      'topology: pair',
      'secretsFile: vigil.secrets.yaml',
      'machines:',
      `  observer: { address: ${ETCD_HOST} }`,
      '  app1: { address: 127.0.77.2 }',
      '  app2: { address: 127.0.77.3 }',
      '',
    ].join('\n'),
  );
  const keys = ['postgresPassword', 'replicationPassword', 'appDbPassword', 'patroniRestPassword'];
  await writeFile(join(dir, 'vigil.secrets.yaml'), keys.map((k) => `${k}: ${PASSWORD}-${k}\n`).join(''), { mode: 0o600 });
  store = await openStore({ endpoints: [etcd.endpoint], cluster: 'opstest', tls: storeTls(identity) });
});

after(async () => {
  etcd?.resume();
  await closeAll(store ? [store] : []);
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('etcd failing in the middle of `vigil switchover`: the etcd code and its fix, exit 1', async () => {
  // An observer that leads but never answers: the command sends its request and waits.
  const lead = await store.campaign('observer-test', 'observer', 10);
  await new Promise<void>((resolve) => (lead.isLeader() ? resolve() : lead.onElected(() => resolve())));
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { main } = await import(${JSON.stringify(MAIN)}); process.exitCode = await main(process.argv.slice(0, 1).concat(process.argv.slice(1)));`,
      'vigil',
      'switchover',
      '--to',
      'app2',
      '-c',
      join(dir, 'vigil.yaml'),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  try {
    // The request is in etcd and the command polls for the answer: now etcd stops answering.
    for (let i = 0; i < 300 && !(await store.getRequest()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(await store.getRequest(), `the command never sent its request\n${stdout}${stderr}`);
    await etcd.pause();
    const status = await exited;
    assert.equal(status, 1, `exit status\n${stdout}${stderr}`);
    assert.match(stderr, /^error \[ETCD_(TIMEOUT|UNAVAILABLE)\]\n/, stderr);
    assert.match(stderr, /fix: check that etcd is running and reachable/, stderr);
    assert.doesNotMatch(stderr, /unexpected error|\n {4}at /, 'no stack trace');
  } finally {
    child.kill('SIGKILL');
    etcd.resume();
  }
});
