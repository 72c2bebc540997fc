import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClusterCa, issueCertificate, type CertKeyPair } from '../pki/ca.ts';
import { listenHttps, planHttps } from './https.ts';

let dir: string;
let pair: CertKeyPair;
let other: CertKeyPair;
let caPem: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'refapp-https-'));
  const ca = await createClusterCa({ clusterName: 't' });
  caPem = ca.certPem;
  pair = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['127.0.0.1'], usage: 'server' });
  other = await issueCertificate(ca, { commonName: 'x', ipAddresses: ['127.0.0.1'], usage: 'server' });
  await writeFile(join(dir, 'app.pem'), pair.certPem);
  await writeFile(join(dir, 'app.key'), pair.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'other.key'), other.keyPem, { mode: 0o600 });
});
after(() => rm(dir, { recursive: true, force: true }));

async function settings(https: Record<string, unknown>): Promise<string> {
  const file = join(dir, 'appsettings.json');
  await writeFile(file, `// comment\n${JSON.stringify({ Https: https }, null, 2)}\n`);
  return file;
}

test('serves HTTPS with the certificate and key the settings name', async () => {
  const plan = await planHttps(await settings({ Port: 0, CertificateFilePath: join(dir, 'app.pem'), KeyFilePath: join(dir, 'app.key') }));
  assert.ok(plan.ok, plan.ok ? '' : plan.reason);
  const { server, port } = await listenHttps(plan, '127.0.0.1', (_req, res) => res.end('ok'));
  try {
    const body = await new Promise<string>((resolve, reject) =>
      request({ host: '127.0.0.1', port, path: '/', ca: caPem }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      })
        .on('error', reject)
        .end(),
    );
    assert.equal(body, 'ok');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("stays off, saying why, for each of the seed's faults", async () => {
  const cert = join(dir, 'app.pem');
  const key = join(dir, 'app.key');
  const reason = async (https: Record<string, unknown>) => {
    const p = await planHttps(await settings(https));
    assert.equal(p.ok, false);
    return p.ok ? '' : p.reason;
  };
  assert.match(
    await reason({ Port: 0, _CertificateFilePath: cert, KeyFilePath: key }),
    /Https\.CertificateFilePath is disabled \(written Https\._CertificateFilePath\)/,
  );
  assert.match(
    await reason({ Port: 0, CertificateFilePath: 'C:\\certs\\app.pem', KeyFilePath: key }),
    /Https\.CertificateFilePath names C:\\certs\\app\.pem: ENOENT/,
  );
  assert.match(await reason({ Port: 0, CertificateFilePath: cert, KeyFilePath: join(dir, 'nope.key') }), /Https\.KeyFilePath names .*nope\.key: ENOENT/);
  assert.match(await reason({ Port: 'x', CertificateFilePath: cert, KeyFilePath: key }), /Https\.Port is not a port number/);
  const mismatch = await planHttps(await settings({ Port: 0, CertificateFilePath: cert, KeyFilePath: join(dir, 'other.key') }));
  assert.ok(mismatch.ok);
  await assert.rejects(
    listenHttps(mismatch, '127.0.0.1', () => {}),
    /key values mismatch/,
  );
});
