import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Machine } from '../config/schema.ts';
import { AGENT_PORT } from '../layout/network.ts';
import { PATHS } from '../layout/paths.ts';
import { VIGIL_INSTALL } from '../layout/units.ts';
import type { AgentStatus } from '../model/ha.ts';
import { createClusterCa, machinePkiFiles, writePki } from '../pki/ca.ts';
import type { ExecOptions, ExecResult } from '../remote/types.ts';
import { LocalShell } from '../testing/helpers.ts';
import { agentRole, agentWhyNotServing } from './remote.ts';

/**
 * This machine standing in for a cluster machine: the installed node is this process's, the PKI
 * directory a temporary one and the agent's port the test server's. The script apply sends, node,
 * TLS with client certificates and the agent's answers are real.
 */
class MappedShell extends LocalShell {
  constructor(
    private readonly pkiDir: string,
    readonly port: number,
  ) {
    super('app1');
  }
  override exec(argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    const mapped = argv.map((a) =>
      a === VIGIL_INSTALL.node ? process.execPath : a.replace(PATHS.pkiDir, this.pkiDir).replace(`:${AGENT_PORT}/`, `:${this.port}/`),
    );
    return super.exec(mapped, opts);
  }
}

const machine = { name: 'app1', address: '127.0.0.1', roles: ['app'] } as Machine;

async function withAgent(answer: (path: string) => [number, string], body: (shell: MappedShell) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-remote-'));
  let server: Server | undefined;
  try {
    const ca = await createClusterCa({ clusterName: 'test' });
    const files = await machinePkiFiles(ca, machine);
    await writePki(dir, files);
    server = createServer({ ca: ca.certPem, cert: files['app1.pem'], key: files['app1.key'], requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const [status, text] = answer(req.url ?? '');
      res.writeHead(status, { 'content-type': 'application/json' }).end(text);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    await body(new MappedShell(dir, (server.address() as AddressInfo).port));
  } finally {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await rm(dir, { recursive: true, force: true });
  }
}

const status = (s: Partial<AgentStatus>): string =>
  JSON.stringify({ node: 'app1', active: false, epoch: 3, confirmedAgoMs: 100, appHealthy: false, ready: true, services: [], disk: [], ...s });

test("apply reads the agent's role and, when it does not serve, the agent's own reason", async () => {
  await withAgent(
    (path) => (path === '/role' ? [503, ''] : [200, status({ inactiveReason: 'waits for app2 to stop serving (handover)' })]),
    async (shell) => {
      assert.equal(await agentRole(shell, machine), 503);
      assert.equal(await agentWhyNotServing(shell, machine), 'its agent says it is not active: waits for app2 to stop serving (handover)');
    },
  );
  await withAgent(
    () => [200, status({ active: true, appHealthy: false })],
    async (shell) => {
      assert.equal(await agentRole(shell, machine), 200);
      assert.equal(await agentWhyNotServing(shell, machine), "its agent is active, but the application's health check on the machine fails");
    },
  );
  await withAgent(
    () => [200, 'not json'],
    async (shell) => assert.equal(await agentWhyNotServing(shell, machine), 'its agent answered /status with something other than JSON'),
  );
});

test('an agent that does not answer: role 0, and apply says so', async () => {
  let port = 0;
  await withAgent(
    () => [200, ''],
    async (shell) => {
      port = shell.port;
    },
  );
  // The server is closed now: nothing listens on its port.
  const dir = await mkdtemp(join(tmpdir(), 'vigil-remote-'));
  try {
    await writePki(dir, await machinePkiFiles(await createClusterCa({ clusterName: 'test' }), machine));
    const shell = new MappedShell(dir, port);
    assert.equal(await agentRole(shell, machine), 0);
    assert.equal(await agentWhyNotServing(shell, machine), 'its agent does not answer on /status');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
