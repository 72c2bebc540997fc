import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createClusterCa, issueCertificate } from '../pki/ca.ts';
import { httpOk } from './net.ts';

test('httpOk over HTTPS: the certificate must chain to the CA file and name the server name, unless verify is off', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-net-'));
  const ca = await createClusterCa({ clusterName: 'test' });
  const other = await createClusterCa({ clusterName: 'other' });
  const leaf = await issueCertificate(ca, { commonName: 'app1', ipAddresses: ['127.0.0.1'], dnsNames: ['app1'], usage: 'server' });
  const server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    await writeFile(join(dir, 'other.pem'), other.certPem);
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
    const caFile = join(dir, 'ca.pem');
    assert.equal(await httpOk(url, 5000, 'GET', { caFile, servername: 'app1', verify: true }), true);
    assert.equal(await httpOk(url, 5000, 'GET', { caFile, servername: 'app2', verify: true }), false, 'another machine name');
    assert.equal(await httpOk(url, 5000, 'GET', { caFile: join(dir, 'other.pem'), servername: 'app1', verify: true }), false, 'another CA');
    assert.equal(await httpOk(url, 5000, 'GET', { caFile: join(dir, 'missing.pem'), servername: 'app1', verify: true }), false, 'no CA file');
    assert.equal(await httpOk(url, 5000, 'GET', { caFile: join(dir, 'other.pem'), servername: 'app2', verify: false }), true, 'verify off');
    assert.equal(await httpOk(url.replace('https:', 'http:'), 5000), false, 'plain HTTP to the TLS port');
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  }
});
