import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createMtlsServer, mtlsFetch, type MtlsServer } from '../mtls/mtls.ts';
import { createClusterCa, issueCertificate, type CertKeyPair, type ClusterCa } from '../pki/ca.ts';
import type { AgentStatus } from '../model/ha.ts';
import { agentHandler, ReadyRefused } from './api.ts';
import { FenceRefused } from './agent.ts';

let ca: ClusterCa;
let server: MtlsServer;
const ids: Record<string, CertKeyPair> = {};
let active = true;
const fenced: number[] = [];
const proxyAdmin: Record<string, 'ready' | 'maint'> = { app1: 'maint', app2: 'ready' };
const dbAdmin: Record<string, 'ready' | 'maint'> = { db1: 'ready', db2: 'ready' };
const markedUp: string[] = [];

before(async () => {
  ca = await createClusterCa({ clusterName: 'test' });
  for (const name of ['app1', 'app2', 'observer', 'proxy'])
    ids[name] = await issueCertificate(ca, { commonName: name, ipAddresses: ['127.0.0.1'], usage: 'both' });
  server = await createMtlsServer({
    ca: ca.certPem,
    cert: ids.app1!.certPem,
    key: ids.app1!.keyPem,
    host: '127.0.0.1',
    port: 0,
    handler: agentHandler({
      status: async () => ({ node: 'app1', active, epoch: 3, confirmedAgoMs: 10, appHealthy: true, ready: true, services: [], disk: [] }) satisfies AgentStatus,
      roleOk: async () => active,
      fence: async (e) => {
        if (e > 4) throw new FenceRefused(`epoch ${e} is more than one above the newest this agent has seen (3)`);
        fenced.push(e);
      },
      writers: new Set(['observer', 'admin']),
      // A peer's ride-out (the server is app1's agent; app2 is the other app machine).
      rideOut: {
        grant: async (r) =>
          r.epoch === 3 ? { granted: true } : { granted: false, reason: `app1's record names app2 at epoch 3, not ${r.node} at ${r.epoch}` },
        askers: new Set(['app2']),
      },
      // The proxy machine's HAProxy, as the daemon wires it (the record: app1 at epoch 3).
      proxy: {
        servers: async () =>
          Object.entries(proxyAdmin).map(([server, admin]) => ({ backend: 'app', server, admin, op: 'up' as const, checks: 'enabled' as const })),
        maint: async (s) => void (proxyAdmin[s] = 'maint'),
        ready: async (s, e) => {
          if (s !== 'app1' || e !== 3) throw new ReadyRefused(`the active record is app1 at epoch 3, not ${s} at epoch ${e}`);
          proxyAdmin[s] = 'ready';
        },
        up: async (s, e) => {
          if (s !== 'app1' || e !== 3) throw new ReadyRefused(`the active record is app1 at epoch 3, not ${s} at epoch ${e}`);
          markedUp.push(s);
        },
        db: {
          servers: async () =>
            Object.entries(dbAdmin).map(([server, admin]) => ({ backend: 'postgres', server, admin, op: 'up' as const, checks: 'enabled' as const })),
          maint: async (s) => void (dbAdmin[s] = 'maint'),
          ready: async (s) => void (dbAdmin[s] = 'ready'),
        },
      },
    }),
  });
});
after(async () => server.close());

const call = (as: string, path: string, method = 'GET', json?: unknown) =>
  mtlsFetch(`https://127.0.0.1:${server.port}${path}`, { ca: ca.certPem, cert: ids[as]!.certPem, key: ids[as]!.keyPem, method, json, timeoutMs: 5000 });

test('the role endpoint answers 200 only while active', async () => {
  active = true;
  assert.equal((await call('proxy', '/role')).status, 200);
  active = false;
  assert.equal((await call('proxy', '/role')).status, 503);
  active = true;
});

test('any cluster certificate may read the status', async () => {
  const res = await call('app2', '/status');
  assert.equal(res.status, 200);
  assert.equal(res.json<AgentStatus>().epoch, 3);
});

test('only observer machines (and the admin) may fence', async () => {
  assert.equal((await call('app2', '/fence', 'POST', { epoch: 4 })).status, 403);
  assert.deepEqual(fenced, []);
  assert.equal((await call('observer', '/fence', 'POST', { epoch: 4 })).status, 200);
  assert.deepEqual(fenced, [4]);
});

test('a fence without a valid epoch is refused', async () => {
  assert.equal((await call('observer', '/fence', 'POST', { epoch: 'soon' })).status, 400);
  assert.equal((await call('observer', '/fence', 'POST', { epoch: 0 })).status, 400);
});

test('a fence the agent refuses (an epoch no failover could send) is 409 with its reason', async () => {
  const before = [...fenced];
  const res = await call('observer', '/fence', 'POST', { epoch: 9007199254740991 });
  assert.equal(res.status, 409);
  assert.match(res.json<{ error: string }>().error, /more than one above the newest this agent has seen/);
  assert.deepEqual(fenced, before);
});

test('unknown paths are 404', async () => {
  assert.equal((await call('observer', '/nothing')).status, 404);
});

test('the proxy endpoints: only observers and the admin read and fence; READY only for the record at its epoch', async () => {
  assert.equal((await call('app2', '/proxy')).status, 403);
  assert.equal((await call('app2', '/proxy/maint', 'POST', { server: 'app1', epoch: 3 })).status, 403);
  const read = await call('observer', '/proxy');
  assert.equal(read.status, 200);
  assert.deepEqual(
    read.json<{ servers: { server: string; admin: string }[] }>().servers.map((s) => `${s.server}:${s.admin}`),
    ['app1:maint', 'app2:ready'],
  );
  assert.equal((await call('observer', '/proxy/maint', 'POST', { server: 'app2', epoch: 3 })).status, 200);
  const late = await call('observer', '/proxy/ready', 'POST', { server: 'app2', epoch: 2 });
  assert.equal(late.status, 409);
  assert.match(late.json<{ error: string }>().error, /not app2 at epoch 2/);
  assert.equal((await call('observer', '/proxy/ready', 'POST', { server: 'app1', epoch: 3 })).status, 200);
  assert.deepEqual(proxyAdmin, { app1: 'ready', app2: 'maint' });
  assert.equal((await call('observer', '/proxy/maint', 'POST', { server: 'app1; shutdown', epoch: 3 })).status, 400);
  assert.equal((await call('observer', '/proxy/ready', 'POST', { server: 'app1' })).status, 400);
  assert.equal((await call('observer', '/proxy/drain', 'POST', { server: 'app1', epoch: 3 })).status, 404);
});

test('UP at once (/proxy/up): observers and the admin only, only for the record at its epoch, never on :5000', async () => {
  assert.equal((await call('app1', '/proxy/up', 'POST', { server: 'app1', epoch: 3 })).status, 403);
  const late = await call('observer', '/proxy/up', 'POST', { server: 'app2', epoch: 3 });
  assert.equal(late.status, 409);
  assert.match(late.json<{ error: string }>().error, /up refused: .*not app2 at epoch 3/);
  assert.equal((await call('observer', '/proxy/up', 'POST', { server: 'app1' })).status, 400);
  assert.equal((await call('observer', '/proxy/up', 'POST', { server: 'db1', backend: 'postgres' })).status, 400);
  assert.equal((await call('observer', '/proxy/up', 'POST', { server: 'app1', epoch: 3 })).status, 200);
  assert.deepEqual(markedUp, ['app1']);
});

test('the proxy endpoints for :5000 (the database release): backend postgres, no epoch; observers only', async () => {
  assert.equal((await call('app2', '/proxy/maint', 'POST', { server: 'db1', backend: 'postgres' })).status, 403);
  assert.equal((await call('observer', '/proxy/maint', 'POST', { server: 'db1', backend: 'postgres' })).status, 200);
  const read = await call('observer', '/proxy?backend=postgres');
  assert.deepEqual(
    read.json<{ servers: { server: string; admin: string }[] }>().servers.map((s) => `${s.server}:${s.admin}`),
    ['db1:maint', 'db2:ready'],
  );
  assert.equal((await call('observer', '/proxy/ready', 'POST', { server: 'db1', backend: 'postgres' })).status, 200);
  assert.deepEqual(dbAdmin, { db1: 'ready', db2: 'ready' });
  assert.equal((await call('observer', '/proxy/maint', 'POST', { server: 'db1', backend: 'mysql' })).status, 400);
  assert.equal((await call('observer', '/proxy')).status, 200, 'the app backend without the parameter');
});

test('ride-out: an app machine asks for itself; a yes is 200, a refusal 409 with its reason; anyone else 403', async () => {
  const yes = await call('app2', '/ride-out', 'POST', { node: 'app2', epoch: 3 });
  assert.equal(yes.status, 200);
  assert.deepEqual(yes.json(), { granted: true });
  const no = await call('app2', '/ride-out', 'POST', { node: 'app2', epoch: 2 });
  assert.equal(no.status, 409);
  assert.match((no.json() as { reason: string }).reason, /not app2 at 2/);
  assert.equal((await call('app2', '/ride-out', 'POST', { node: 'observer', epoch: 3 })).status, 403, 'only for itself');
  assert.equal((await call('observer', '/ride-out', 'POST', { node: 'observer', epoch: 3 })).status, 403, 'only an app machine');
  assert.equal((await call('app2', '/ride-out', 'POST', { node: 'app2', epoch: 0 })).status, 400);
});
