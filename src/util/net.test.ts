import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createClusterCa, issueCertificate } from '../pki/ca.ts';
import { freePort, httpOk, tcpRefused } from './net.ts';

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

test('httpOk over plain HTTP: 2xx only, on a kept connection; a kept connection the server drops is tried once more on a new one', async () => {
  // A raw HTTP server: the first connection answers its first request and drops the connection
  // at the second, before answering (a server closing an idle kept-alive connection as the
  // request goes out); `failAll` drops every request.
  let connections = 0;
  let failAll = false;
  const statuses = new Map([
    ['/ok', '200 OK'],
    ['/down', '503 Service Unavailable'],
    ['/moved', '302 Found'],
  ]);
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    const n = ++connections;
    let requests = 0;
    socket.on('data', (d: Buffer) => {
      requests++;
      if (failAll || (n === 1 && requests === 2)) return void socket.resetAndDestroy();
      const path = /^GET (\S+)/.exec(d.toString())?.[1] ?? '';
      if (path === '/hang') return;
      socket.write(`HTTP/1.1 ${statuses.get(path) ?? '404 Not Found'}\r\nContent-Length: 2\r\nLocation: /ok\r\nConnection: keep-alive\r\n\r\nok`);
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = (path: string) => `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  try {
    assert.equal(await httpOk(url('/ok')), true);
    assert.equal(await httpOk(url('/ok')), true, 'the dropped kept connection was tried again on a new one');
    assert.equal(connections, 2);
    assert.equal(await httpOk(url('/ok')), true);
    assert.equal(await httpOk(url('/ok')), true);
    assert.equal(connections, 3, 'the retry used a connection of its own; the next one is kept again');
    assert.equal(await httpOk(url('/down')), false);
    assert.equal(await httpOk(url('/moved')), false, 'a redirect is not followed');
    assert.equal(await httpOk(url('/hang'), 300), false);
    failAll = true;
    assert.equal(await httpOk(url('/ok')), false, 'a server that drops every request fails the check (tried twice at most)');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

test('tcpRefused: true only when nothing listens on the port; an open port is not refused', async () => {
  const server = createTcpServer((sock: Socket) => sock.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    assert.equal(await tcpRefused('127.0.0.1', port, 2000), false, 'a listening port');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  assert.equal(await tcpRefused('127.0.0.1', port, 2000), true, 'the same port once closed');
  assert.equal(await tcpRefused('127.0.0.1', await freePort(), 2000), true, 'a free port');
});
