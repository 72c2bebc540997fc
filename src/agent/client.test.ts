import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentStatus } from '../model/ha.ts';
import { createMtlsServer, type MtlsServer } from '../mtls/mtls.ts';
import { createClusterCa, issueCertificate, type CertKeyPair, type ClusterCa } from '../pki/ca.ts';
import { ERROR_CODES, VigilError } from '../util/errors.ts';
import { freePort } from '../util/net.ts';
import { agentHandler } from './api.ts';
import { AgentClient, AgentError, type AgentErrorCode } from './client.ts';

let ca: ClusterCa;
let other: ClusterCa;
let server: MtlsServer;
/** Answers with a stalled or broken body instead of the agent's, when set. */
let misbehave: 'silent' | 'not-json' | undefined;
const ids: Record<string, CertKeyPair> = {};
let active = true;
const fenced: number[] = [];
const status: AgentStatus = { node: 'app1', active: true, epoch: 3, confirmedAgoMs: 10, appHealthy: true, ready: true, services: [], disk: [] };

before(async () => {
  ca = await createClusterCa({ clusterName: 'test' });
  other = await createClusterCa({ clusterName: 'other' });
  for (const name of ['app1', 'observer', 'proxy']) ids[name] = await issueCertificate(ca, { commonName: name, ipAddresses: ['127.0.0.1'], usage: 'both' });
  ids.stranger = await issueCertificate(other, { commonName: 'observer', ipAddresses: ['127.0.0.1'], usage: 'both' });
  const api = agentHandler({
    status: async () => ({ ...status, active }),
    roleOk: async () => active,
    fence: async (e) => void fenced.push(e),
    writers: new Set(['observer', 'admin']),
  });
  server = await createMtlsServer({
    ca: ca.certPem,
    cert: ids.app1!.certPem,
    key: ids.app1!.keyPem,
    host: '127.0.0.1',
    port: 0,
    handler: async (req, res, peer) => {
      if (misbehave === 'silent') return new Promise<void>(() => undefined);
      if (misbehave === 'not-json') return void res.writeHead(200).end('<html>');
      return api(req, res, peer);
    },
  });
});
after(async () => server.close(100));

const as = (name: string, port = server.port) =>
  new AgentClient(
    { ca: name === 'stranger' ? other.certPem : ca.certPem, cert: ids[name]!.certPem, key: ids[name]!.keyPem },
    { name: 'app1', address: '127.0.0.1' },
    port,
  );

async function rejectsWith(p: Promise<unknown>, code: AgentErrorCode): Promise<AgentError> {
  let caught: unknown;
  await p.then(
    () => assert.fail(`expected ${code}`),
    (err: unknown) => (caught = err),
  );
  assert.ok(caught instanceof AgentError, `an AgentError, not ${String(caught)}`);
  assert.ok(caught instanceof VigilError);
  assert.equal(caught.code, code);
  assert.ok(code in ERROR_CODES, `${code} is registered`);
  assert.match(caught.message, /^agent on app1 \(https:\/\/127\.0\.0\.1:\d+\/\w+\): /);
  return caught;
}

describe('AgentClient', () => {
  it('status() returns what GET /status answers', async () => {
    misbehave = undefined;
    active = true;
    assert.deepEqual(await as('observer').status({ timeoutMs: 5000 }), status);
  });

  it('role() is true on 200 and false on 503', async () => {
    active = true;
    assert.equal(await as('proxy').role({ timeoutMs: 5000 }), true);
    active = false;
    assert.equal(await as('proxy').role({ timeoutMs: 5000 }), false);
  });

  it("fence() posts the epoch; a machine that may not fence gets AGENT_HTTP with the agent's 403", async () => {
    fenced.length = 0;
    await as('observer').fence(7, { timeoutMs: 5000 });
    assert.deepEqual(fenced, [7]);
    const e = await rejectsWith(as('proxy').fence(8, { timeoutMs: 5000 }), 'AGENT_HTTP');
    assert.equal(e.status, 403);
    assert.match(e.message, /proxy may not fence/);
    assert.deepEqual(fenced, [7]);
  });

  it('a certificate from another CA is AGENT_TLS, not retryable', async () => {
    const e = await rejectsWith(as('stranger').status({ timeoutMs: 5000 }), 'AGENT_TLS');
    assert.equal(e.retryable, false);
  });

  it('nothing listening is AGENT_UNREACHABLE, retryable', async () => {
    const e = await rejectsWith(as('observer', await freePort()).status({ timeoutMs: 5000 }), 'AGENT_UNREACHABLE');
    assert.equal(e.retryable, true);
  });

  it('no answer within the deadline is AGENT_TIMEOUT', async () => {
    misbehave = 'silent';
    try {
      const t0 = performance.now();
      const e = await rejectsWith(as('observer').status({ timeoutMs: 300 }), 'AGENT_TIMEOUT');
      const took = performance.now() - t0;
      assert.ok(took >= 290 && took < 2000, `gave up after ${took} ms`);
      assert.match(e.message, /no answer within 300 ms/);
      assert.equal(e.retryable, true);
    } finally {
      misbehave = undefined;
    }
  });

  it("the caller's signal cancels a call under way, or before it starts: AGENT_CANCELLED", async () => {
    misbehave = 'silent';
    try {
      const ctl = new AbortController();
      setTimeout(() => ctl.abort(), 100);
      const t0 = performance.now();
      await rejectsWith(as('observer').status({ timeoutMs: 5000, signal: ctl.signal }), 'AGENT_CANCELLED');
      assert.ok(performance.now() - t0 < 2000);
      await rejectsWith(as('observer').fence(9, { timeoutMs: 5000, signal: AbortSignal.abort() }), 'AGENT_CANCELLED');
    } finally {
      misbehave = undefined;
    }
  });

  it("an answer that is not the agent's is AGENT_ANSWER", async () => {
    misbehave = 'not-json';
    try {
      await rejectsWith(as('observer').status({ timeoutMs: 5000 }), 'AGENT_ANSWER');
    } finally {
      misbehave = undefined;
    }
  });
});
