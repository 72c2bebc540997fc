import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ERROR_CODES, VigilError } from '../util/errors.ts';
import { freePort } from '../util/net.ts';
import { remotePatroni } from '../apply/remote.ts';
import type { RemoteShell } from '../remote/types.ts';
import { createClusterCa, issueCertificate } from '../pki/ca.ts';
import type { MtlsIdentity } from '../mtls/mtls.ts';
import { PatroniClient, PatroniError, type PatroniErrorCode } from './client.ts';

const PASSWORD = 'pr-Vb55nmc7-secret';

/**
 * A stand-in for one member's REST API over TLS, as Patroni serves it (src/render/patroni.ts):
 * a certificate from the cluster CA naming 127.0.0.1, a client certificate asked for but not
 * required. It answers what `route` says, and records every request with the client's certificate.
 */
let server: Server;
let port: number;
let identity: MtlsIdentity;
/** Another cluster's CA and certificates: trusted by nobody here. */
let foreign: MtlsIdentity;
const seen: { method: string; url: string; authorization?: string; body: string; clientCn?: string }[] = [];
let route: (req: IncomingMessage, res: ServerResponse, body: string) => void = (_req, res) => void res.writeHead(404).end();

before(async () => {
  const ca = await createClusterCa({ clusterName: 'test' });
  const own = await issueCertificate(ca, { commonName: 'observer', ipAddresses: ['127.0.0.1'], usage: 'both' });
  identity = { ca: ca.certPem, cert: own.certPem, key: own.keyPem };
  const other = await createClusterCa({ clusterName: 'other' });
  const stranger = await issueCertificate(other, { commonName: 'db1', ipAddresses: ['127.0.0.1'], usage: 'both' });
  foreign = { ca: other.certPem, cert: stranger.certPem, key: stranger.keyPem };
  const member = await issueCertificate(ca, { commonName: 'db1', ipAddresses: ['127.0.0.1'], usage: 'both' });
  server = createServer({ ca: ca.certPem, cert: member.certPem, key: member.keyPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const socket = req.socket as TLSSocket;
      const clientCn = socket.authorized ? socket.getPeerCertificate().subject?.CN : undefined;
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        body,
        ...(typeof clientCn === 'string' ? { clientCn } : {}),
      });
      route(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const client = (password?: string) => new PatroniClient({ address: '127.0.0.1', port, identity, ...(password ? { password } : {}) });
const json = (res: ServerResponse, status: number, body: unknown) =>
  void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

async function rejectsWith(p: Promise<unknown>, code: PatroniErrorCode): Promise<PatroniError> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected ${code}`),
    (err: unknown) => (caught = err),
  );
  assert.ok(caught instanceof PatroniError, `a PatroniError, not ${String(caught)}`);
  assert.ok(caught instanceof VigilError);
  assert.equal(caught.code, code);
  assert.ok(code in ERROR_CODES, `${code} is registered`);
  return caught;
}

describe('PatroniClient', () => {
  it('role checks: OPTIONS /primary and /replica, GET /liveness; 200 holds, any other status does not', async () => {
    seen.length = 0;
    route = (req, res) => void res.writeHead(req.url === '/primary' ? 200 : 503).end();
    assert.equal(await client().check('primary', { timeoutMs: 2000 }), true);
    assert.equal(await client().check('replica', { timeoutMs: 2000 }), false);
    route = (_req, res) => void res.writeHead(200).end();
    assert.equal(await client().check('liveness', { timeoutMs: 2000 }), true);
    assert.deepEqual(
      seen.map((s) => `${s.method} ${s.url}`),
      ['OPTIONS /primary', 'OPTIONS /replica', 'GET /liveness'],
    );
    assert.ok(
      seen.every((s) => s.authorization === undefined),
      'reads send no credentials',
    );
  });

  it('cluster(): GET /cluster, members with role, state and lag, and maintenance mode', async () => {
    route = (_req, res) =>
      json(res, 200, {
        members: [
          { name: 'db1', role: 'leader', state: 'running', timeline: 3 },
          { name: 'db2', role: 'sync_standby', state: 'streaming', lag: 0 },
          { name: 'db3', role: 'replica', state: 'running', lag: 'unknown' },
        ],
        pause: true,
        scope: 'prod',
      });
    const view = await client().cluster({ timeoutMs: 2000 });
    assert.deepEqual(view, {
      members: [
        { name: 'db1', role: 'leader', state: 'running' },
        { name: 'db2', role: 'sync_standby', state: 'streaming', lag: 0 },
        { name: 'db3', role: 'replica', state: 'running', lag: 'unknown' },
      ],
      paused: true,
    });
    route = (_req, res) => json(res, 200, {});
    assert.deepEqual(await client().cluster({ timeoutMs: 2000 }), { members: [], paused: false });
  });

  it('status() reads GET /patroni and config() GET /config', async () => {
    route = (req, res) =>
      req.url === '/patroni'
        ? json(res, 200, { state: 'running', role: 'replica', patroni: { version: '3.0.2', scope: 'x' } })
        : json(res, 200, { ttl: 30, synchronous_mode: true });
    assert.deepEqual(await client().status({ timeoutMs: 2000 }), { role: 'replica', state: 'running', version: '3.0.2' });
    assert.deepEqual(await client().config({ timeoutMs: 2000 }), { synchronousMode: true, failsafeMode: false });
    route = (_req, res) => json(res, 200, { synchronous_mode: false, failsafe_mode: true });
    assert.deepEqual(await client().config({ timeoutMs: 2000 }), { synchronousMode: false, failsafeMode: true });
    route = (_req, res) => json(res, 200, { state: 'starting' });
    assert.deepEqual(await client().status({ timeoutMs: 2000 }), { state: 'starting' });
  });

  it('history(): GET /history, the timeline switches; entries without a time or a new leader keep their place', async () => {
    // The shape Patroni answers (docs: "GET /history"): [timeline, lsn, reason, timestamp, new leader].
    route = (_req, res) =>
      json(res, 200, [
        [1, 25623960, 'no recovery target specified'],
        [2, 25624344, 'no recovery target specified', '2026-12-07T18:01:02.123456+00:00', 'db2'],
      ]);
    assert.deepEqual(await client().history({ timeoutMs: 2000 }), [
      { timeline: 1, lsn: 25623960, reason: 'no recovery target specified', at: null, newLeader: null },
      { timeline: 2, lsn: 25624344, reason: 'no recovery target specified', at: '2026-12-07T18:01:02.123456+00:00', newLeader: 'db2' },
    ]);
    route = (_req, res) => json(res, 200, { not: 'a list' });
    await rejectsWith(client().history({ timeoutMs: 2000 }), 'PATRONI_ANSWER');
    route = (_req, res) => json(res, 200, [['x']]);
    await rejectsWith(client().history({ timeoutMs: 2000 }), 'PATRONI_ANSWER');
  });

  it('switchover(): POST /switchover with basic auth as the vigil user and the leader and candidate', async () => {
    seen.length = 0;
    route = (_req, res) => void res.writeHead(200).end('Successfully switched over to "db2"');
    const r = await client(PASSWORD).switchover({ leader: 'db1', candidate: 'db2' }, { timeoutMs: 2000 });
    assert.deepEqual(r, { status: 200, answer: 'Successfully switched over to "db2"' });
    assert.equal(seen[0]!.method, 'POST');
    assert.equal(seen[0]!.url, '/switchover');
    assert.equal(seen[0]!.authorization, `Basic ${Buffer.from(`vigil:${PASSWORD}`).toString('base64')}`);
    assert.deepEqual(JSON.parse(seen[0]!.body), { leader: 'db1', candidate: 'db2' });
  });

  it('setFailsafeMode(): PATCH /config with basic auth and failsafe_mode; a refusal rejects', async () => {
    seen.length = 0;
    route = (_req, res) => json(res, 200, { failsafe_mode: false });
    await client(PASSWORD).setFailsafeMode(false, { timeoutMs: 2000 });
    assert.equal(seen[0]!.method, 'PATCH');
    assert.equal(seen[0]!.url, '/config');
    assert.equal(seen[0]!.authorization, `Basic ${Buffer.from(`vigil:${PASSWORD}`).toString('base64')}`);
    assert.deepEqual(JSON.parse(seen[0]!.body), { failsafe_mode: false });
    route = (_req, res) => void res.writeHead(503).end('DCS is not accessible');
    await rejectsWith(client(PASSWORD).setFailsafeMode(true, { timeoutMs: 2000 }), 'PATRONI_HTTP');
    await assert.rejects(client().setFailsafeMode(true, { timeoutMs: 2000 }), /needs the REST password/);
  });

  it('a refused switchover is PATRONI_HTTP with its status and answer, and never shows the password', async () => {
    route = (_req, res) => void res.writeHead(412).end('candidate name does not match with sync_standby');
    const e = await rejectsWith(client(PASSWORD).switchover({ leader: 'db1', candidate: 'db3' }, { timeoutMs: 2000 }), 'PATRONI_HTTP');
    assert.equal(e.status, 412);
    assert.equal(e.answer, 'candidate name does not match with sync_standby');
    assert.match(e.message, /answered 412: candidate name does not match/);
    assert.equal(e.retryable, false);

    route = (_req, res) => void res.writeHead(401).end('no auth header received');
    const auth = await rejectsWith(client(PASSWORD).switchover({ leader: 'db1', candidate: 'db2' }, { timeoutMs: 2000 }), 'PATRONI_HTTP');
    assert.match(auth.problems[0]!.fix, /REST password/);
    const b64 = Buffer.from(`vigil:${PASSWORD}`).toString('base64');
    for (const err of [e, auth]) {
      const all = `${err.message} ${err.stack ?? ''} ${JSON.stringify(err)} ${JSON.stringify(err.problems)}`;
      assert.ok(!all.includes(PASSWORD) && !all.includes(b64), 'no password in the error');
    }
  });

  it('a read answered with an error status is PATRONI_HTTP; an answer that is not JSON is PATRONI_ANSWER', async () => {
    route = (_req, res) => void res.writeHead(503).end('{"state":"stopped"}');
    const e = await rejectsWith(client().cluster({ timeoutMs: 2000 }), 'PATRONI_HTTP');
    assert.equal(e.status, 503);
    assert.equal(e.retryable, true);
    route = (_req, res) => void res.writeHead(200).end('<html>not patroni</html>');
    await rejectsWith(client().cluster({ timeoutMs: 2000 }), 'PATRONI_ANSWER');
    route = (_req, res) => json(res, 200, { members: 'db1' });
    await rejectsWith(client().cluster({ timeoutMs: 2000 }), 'PATRONI_ANSWER');
  });

  it('no answer within the deadline is PATRONI_TIMEOUT, for a silent member and for a body that stalls', async () => {
    route = () => undefined; // never answers
    let t0 = performance.now();
    const e = await rejectsWith(client().cluster({ timeoutMs: 200 }), 'PATRONI_TIMEOUT');
    const took = performance.now() - t0;
    assert.ok(took >= 190 && took < 1500, `gave up after ${took} ms`);
    assert.equal(e.retryable, true);
    assert.match(e.message, new RegExp(`^Patroni https://127.0.0.1:${port}/cluster: no answer within 200 ms`));

    route = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"members": [');
    };
    t0 = performance.now();
    await rejectsWith(client().cluster({ timeoutMs: 200 }), 'PATRONI_TIMEOUT');
    assert.ok(performance.now() - t0 < 1500);
    route = () => undefined;
    await rejectsWith(client().check('primary', { timeoutMs: 100 }), 'PATRONI_TIMEOUT');
  });

  it("the caller's signal cancels a call under way, or before it starts: PATRONI_CANCELLED", async () => {
    route = () => undefined;
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 50);
    const t0 = performance.now();
    const e = await rejectsWith(client().cluster({ timeoutMs: 5000, signal: ctl.signal }), 'PATRONI_CANCELLED');
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(e.retryable, false);

    seen.length = 0;
    await rejectsWith(client().check('primary', { timeoutMs: 5000, signal: AbortSignal.abort() }), 'PATRONI_CANCELLED');
    assert.equal(seen.length, 0, 'nothing was sent');
  });

  it('nothing listening is PATRONI_UNREACHABLE, with the reason', async () => {
    const closed = await freePort();
    const e = await rejectsWith(new PatroniClient({ address: '127.0.0.1', port: closed, identity }).cluster({ timeoutMs: 2000 }), 'PATRONI_UNREACHABLE');
    assert.match(e.message, /refused|ECONNREFUSED/);
    assert.equal(e.retryable, true);
    assert.equal(e.url, `https://127.0.0.1:${closed}/cluster`);
  });

  it('speaks TLS, presents its certificate, and trusts the cluster CA only', async () => {
    seen.length = 0;
    route = (_req, res) => json(res, 200, { role: 'primary', state: 'running' });
    assert.equal((await client().status({ timeoutMs: 2000 })).role, 'primary');
    assert.equal(seen[0]?.clientCn, 'observer', 'the write-capable certificate went with the request');
    // A member whose certificate another CA issued (a machine that took its address) is not believed.
    seen.length = 0;
    const e = await rejectsWith(
      new PatroniClient({ address: '127.0.0.1', port, identity: { ...identity, ca: foreign.ca } }).status({ timeoutMs: 2000 }),
      'PATRONI_UNREACHABLE',
    );
    assert.match(e.problems.map((p) => p.fix).join(' '), /vigil apply/);
    assert.equal(seen.length, 0, 'nothing was asked of it');
  });

  it('needs the cluster identity or a transport', () => {
    assert.throws(() => new PatroniClient({ address: '127.0.0.1', port }), /identity/);
  });
});

describe('remotePatroni (apply: asked from a machine of the cluster)', () => {
  /** A shell that runs nothing: it answers what the remote script would print. */
  const shell = (stdout: string, argvs: string[][] = []): RemoteShell => ({
    machine: 'db1',
    exec: async (argv) => {
      argvs.push(argv);
      return { code: 0, stdout, stderr: '' };
    },
    readFile: async () => null,
    writeFile: async () => undefined,
    close: async () => undefined,
  });

  it('carries the method and the URL to the machine and reads the answer', async () => {
    const argvs: string[][] = [];
    const c = new PatroniClient({ address: '10.0.0.21', port: 8008, transport: remotePatroni(shell(JSON.stringify({ status: 200, body: '' }), argvs)) });
    assert.equal(await c.check('primary', { timeoutMs: 3000 }), true);
    assert.deepEqual(argvs[0]!.slice(-2), ['https://10.0.0.21:8008/primary', 'OPTIONS']);
  });

  it('no answer on the machine is PATRONI_UNREACHABLE or PATRONI_TIMEOUT', async () => {
    const c = (stdout: string) => new PatroniClient({ address: '10.0.0.21', port: 8008, transport: remotePatroni(shell(stdout)) });
    await rejectsWith(c(JSON.stringify({ status: 0, body: '', error: 'ECONNREFUSED' })).cluster({ timeoutMs: 3000 }), 'PATRONI_UNREACHABLE');
    await rejectsWith(c(JSON.stringify({ status: 0, body: '', error: 'TimeoutError' })).cluster({ timeoutMs: 3000 }), 'PATRONI_TIMEOUT');
  });

  it('refuses a write: the password would be on a command line', async () => {
    const argvs: string[][] = [];
    const c = new PatroniClient({ address: '10.0.0.21', port: 8008, password: PASSWORD, transport: remotePatroni(shell('', argvs)) });
    await assert.rejects(c.switchover({ leader: 'db1', candidate: 'db2' }, { timeoutMs: 3000 }), /reads only/);
    assert.equal(argvs.length, 0);
  });
});
