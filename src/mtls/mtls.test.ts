import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../util/exec.ts';
import { createClusterCa, issueCertificate, pemBundle, writePki, type CertKeyPair, type ClusterCa } from '../pki/ca.ts';
import {
  ConnectionRefusedError,
  NetError,
  PEER_CLOSED_AFTER_HANDSHAKE,
  TimeoutError,
  TlsError,
  createMtlsServer,
  mtlsFetch,
  type MtlsServer,
  type PeerInfo,
} from './mtls.ts';

const HOST = '127.0.0.1';

interface Calls {
  peers: PeerInfo[];
  tlsErrors: string[];
}

describe('mutual TLS', () => {
  let ca: ClusterCa;
  let otherCa: ClusterCa;
  let serverCert: CertKeyPair;
  let observer: CertKeyPair;
  let stranger: CertKeyPair; // a client certificate from another cluster's CA
  let serverOnly: CertKeyPair; // our CA, but serverAuth only: not a client certificate
  let otherServer: CertKeyPair;
  let server: MtlsServer;
  let url = '';
  const calls: Calls = { peers: [], tlsErrors: [] };

  before(async () => {
    [ca, otherCa] = await Promise.all([createClusterCa({ clusterName: 'prod' }), createClusterCa({ clusterName: 'other' })]);
    [serverCert, observer, stranger, serverOnly, otherServer] = await Promise.all([
      issueCertificate(ca, { commonName: 'app1', ipAddresses: [HOST], usage: 'both' }),
      issueCertificate(ca, { commonName: 'observer1', ipAddresses: ['10.0.0.21'], usage: 'client' }),
      issueCertificate(otherCa, { commonName: 'observer1', ipAddresses: ['10.0.0.21'], usage: 'client' }),
      issueCertificate(ca, { commonName: 'app2', ipAddresses: [HOST], usage: 'server' }),
      issueCertificate(otherCa, { commonName: 'app1', ipAddresses: [HOST], usage: 'server' }),
    ]);
    server = await createMtlsServer({
      ca: ca.certPem,
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      host: HOST,
      port: 0,
      handler: (req, res, peer) => {
        calls.peers.push(peer);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: req.url, peer: peer.commonName, method: req.method }));
      },
      onTlsError: (err) => calls.tlsErrors.push((err as { code?: string }).code ?? err.message),
    });
    url = `https://${HOST}:${server.port}`;
  });
  after(async () => {
    await server.close();
  });

  const as = (id: CertKeyPair, trust = ca) => ({ ca: trust.certPem, cert: id.certPem, key: id.keyPem, timeoutMs: 5_000 });

  /** Asserts the request fails in the handshake and no handler ran. */
  async function refused(p: Promise<unknown>, kind: new (...a: never[]) => NetError = TlsError): Promise<void> {
    const before = calls.peers.length;
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof kind, `expected ${kind.name}, got ${String(e)} (${(e as { cause?: { code?: string } }).cause?.code})`);
      return true;
    });
    assert.equal(calls.peers.length, before, 'the handler must not run');
  }

  it('answers a client with a certificate from the cluster CA, and the handler sees its common name', async () => {
    const res = await mtlsFetch(`${url}/v1/status`, as(observer));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { path: '/v1/status', peer: 'observer1', method: 'GET' });
    assert.equal(calls.peers.at(-1)?.commonName, 'observer1');
    assert.match(calls.peers.at(-1)?.fingerprint256 ?? '', /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const post = await mtlsFetch(`${url}/v1/fence`, { ...as(observer), json: { epoch: 3 } });
    assert.equal(post.json<{ method: string }>().method, 'POST');
  });

  it('resumes the TLS session on each new connection: the handler still sees the client; a new server at that address gets a full handshake and is checked', async () => {
    const reused: boolean[] = [];
    const peers: string[] = [];
    const opts = (cert: CertKeyPair) => ({ ca: ca.certPem, cert: cert.certPem, key: cert.keyPem, host: HOST });
    const first = await createMtlsServer({
      ...opts(serverCert),
      port: 0,
      handler: (req, res, peer) => {
        reused.push((req.socket as TLSSocket).isSessionReused());
        peers.push(peer.commonName);
        res.end('ok');
      },
    });
    const at = `https://${HOST}:${first.port}/`;
    try {
      for (let i = 0; i < 3; i++) assert.equal((await mtlsFetch(at, as(observer))).text, 'ok');
    } finally {
      await first.close();
    }
    assert.deepEqual(reused, [false, true, true]);
    assert.deepEqual(peers, ['observer1', 'observer1', 'observer1']);
    // The same address, a server of another CA: its ticket keys differ, so no resumption, and its certificate is refused.
    const rogue = await createMtlsServer({ ...opts(otherServer), ca: otherCa.certPem, port: first.port, handler: (_q, res) => void res.end('rogue') });
    try {
      await assert.rejects(mtlsFetch(at, as(observer)), (e: unknown) => e instanceof TlsError);
    } finally {
      await rogue.close();
    }
  });

  it('refuses a client without a certificate', async () => {
    const errorsBefore = calls.tlsErrors.length;
    await refused(
      new Promise((resolve, reject) => {
        const req = request(`${url}/v1/status`, { ca: ca.certPem, agent: false }, resolve);
        req.on('error', reject);
        req.end();
      }),
      Error as never,
    );
    assert.ok(calls.tlsErrors.length > errorsBefore, 'the server reports the refused handshake');
  });

  it('refuses a client whose certificate comes from another CA', async () => {
    await refused(mtlsFetch(`${url}/v1/status`, as(stranger)));
    // Node drops such a client without a TLS alert; the client still reports a TLS problem.
    await assert.rejects(
      mtlsFetch(`${url}/v1/status`, as(stranger)),
      (e: unknown) => e instanceof TlsError && e.tlsCode === PEER_CLOSED_AFTER_HANDSHAKE && /refused this side's certificate/.test(e.message),
    );
  });

  it('refuses a client certificate that is not for client authentication', async () => {
    await refused(mtlsFetch(`${url}/v1/status`, as(serverOnly)));
  });

  it('the client refuses a server whose certificate comes from another CA', async () => {
    const rogue = await createMtlsServer({
      ca: ca.certPem,
      cert: otherServer.certPem,
      key: otherServer.keyPem,
      host: HOST,
      port: 0,
      handler: (_q, res) => void res.end('rogue'),
    });
    try {
      await assert.rejects(mtlsFetch(`https://${HOST}:${rogue.port}/`, as(observer)), (e: unknown) => {
        assert.ok(e instanceof TlsError, String(e));
        assert.equal(e.kind, 'tls');
        assert.equal(e.retryable, false);
        assert.match(e.tlsCode, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER/);
        return true;
      });
    } finally {
      await rogue.close();
    }
  });

  it('the client refuses a server certificate that does not name the address', async () => {
    await assert.rejects(
      mtlsFetch(`https://localhost:${server.port}/`, as(observer)),
      (e: unknown) => e instanceof TlsError && e.tlsCode === 'ERR_TLS_CERT_ALTNAME_INVALID',
    );
  });

  it('reports connection refused apart from TLS failures', async () => {
    const tcp = createTcpServer();
    await new Promise<void>((r) => tcp.listen(0, HOST, r));
    const port = (tcp.address() as AddressInfo).port;
    await new Promise((r) => tcp.close(r));
    await assert.rejects(
      mtlsFetch(`https://${HOST}:${port}/`, as(observer)),
      (e: unknown) => e instanceof ConnectionRefusedError && e.kind === 'refused' && e.retryable,
    );
  });

  it('gives up at the deadline: a peer that never handshakes, and a handler that never answers', async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, HOST, r));
    const started = Date.now();
    try {
      await assert.rejects(
        mtlsFetch(`https://${HOST}:${(silent.address() as AddressInfo).port}/`, { ...as(observer), timeoutMs: 300 }),
        (e: unknown) => e instanceof TimeoutError && e.kind === 'timeout',
      );
      assert.ok(Date.now() - started < 3_000);
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => silent.close(r));
    }
    const hanging = await createMtlsServer({
      ca: ca.certPem,
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      host: HOST,
      port: 0,
      handler: () => new Promise(() => {}),
    });
    try {
      await assert.rejects(mtlsFetch(`https://${HOST}:${hanging.port}/`, { ...as(observer), timeoutMs: 300 }), TimeoutError);
    } finally {
      await hanging.close();
    }
  });

  it('stops when its signal aborts', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(mtlsFetch(`${url}/`, { ...as(observer), signal: ac.signal }), (e: unknown) => e instanceof NetError && e.kind === 'aborted');
  });

  it('answers 500 without details when a handler throws', async () => {
    const seen: unknown[] = [];
    const broken = await createMtlsServer({
      ca: ca.certPem,
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      host: HOST,
      port: 0,
      handler: () => {
        throw new Error('secret detail');
      },
      onHandlerError: (err) => seen.push(err),
    });
    try {
      const res = await mtlsFetch(`https://${HOST}:${broken.port}/`, as(observer));
      assert.equal(res.status, 500);
      assert.doesNotMatch(res.text, /secret/);
      assert.equal(seen.length, 1);
    } finally {
      await broken.close();
    }
  });

  it('closes promptly with an idle keep-alive connection, a client stuck before its handshake and a request that never ends', { timeout: 10_000 }, async () => {
    const srv = await createMtlsServer({
      ca: ca.certPem,
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      host: HOST,
      port: 0,
      handler: (req, res) => {
        if (req.url === '/hang') return; // never answers
        res.writeHead(200).end('ok');
      },
    });
    const keepAlive = new Agent({ keepAlive: true });
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: HOST, port: srv.port, path, agent: keepAlive, ...as(observer) }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    const stalled = connect(srv.port, HOST); // TCP only: no TLS handshake ever starts
    stalled.on('error', () => {});
    try {
      assert.equal(await get('/'), 200); // leaves an idle keep-alive connection
      const hanging = get('/hang').catch(() => 'dropped');
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      await srv.close(300);
      assert.ok(Date.now() - started < 2_000, `close took ${Date.now() - started} ms`);
      assert.equal(await hanging, 'dropped');
    } finally {
      keepAlive.destroy();
      stalled.destroy();
    }
  });

  describe('HAProxy as a health-check client', () => {
    let dir = '';
    let cfg = '';
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'vigil-mtls-haproxy-'));
      const proxy = await issueCertificate(ca, { commonName: 'proxy', ipAddresses: [], usage: 'client' });
      await writePki(dir, { 'ca.pem': ca.certPem, 'proxy-bundle.pem': pemBundle(proxy.certPem, proxy.keyPem) });
      cfg = join(dir, 'haproxy.cfg');
      await writeFile(
        cfg,
        [
          'global',
          '  maxconn 100',
          'defaults',
          '  mode http',
          '  timeout connect 2s',
          '  timeout client 5s',
          '  timeout server 5s',
          // HAProxy will not start without a listener; a unix socket needs no free port.
          'frontend api',
          `  bind unix@${join(dir, 'fe.sock')}`,
          '  default_backend agents',
          'backend agents',
          '  option httpchk GET /v1/health',
          `  server app1 ${HOST}:${server.port} check check-ssl verify required ca-file ${join(dir, 'ca.pem')} crt ${join(dir, 'proxy-bundle.pem')} inter 200ms`,
          '',
        ].join('\n'),
      );
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('the bundle is mode 600 and `haproxy -c` accepts the configuration', async () => {
      assert.equal((await stat(join(dir, 'proxy-bundle.pem'))).mode & 0o777, 0o600);
      const r = await run('haproxy', ['-c', '-f', cfg], { allowFail: true });
      assert.equal(r.code, 0, r.stdout + r.stderr);
    });

    it('HAProxy health-checks the mTLS server with the issued client certificate', async () => {
      const before = calls.peers.length;
      const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      try {
        const deadline = Date.now() + 10_000;
        while (!calls.peers.slice(before).some((p) => p.commonName === 'proxy') && Date.now() < deadline && child.exitCode === null) {
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(
          calls.peers.slice(before).some((p) => p.commonName === 'proxy'),
          `no health check arrived; haproxy said: ${stderr}`,
        );
      } finally {
        child.kill('SIGTERM');
        if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      }
    });
  });
});
