/**
 * The agent's HTTPS API (mutual TLS under the cluster CA; see src/mtls/mtls.ts):
 *   GET  /role    200 only while this machine is active at the current epoch and the app is healthy
 *                 (HAProxy's app backend checks it); 503 otherwise.
 *   GET  /status  AgentStatus, for the observer, `vigil status` and doctor.
 *   POST /fence   {"epoch": N}: stop the services now and never serve below epoch N. Only observer
 *                 machines and the admin may call it, and only for an epoch at most one above the
 *                 newest this agent has seen (409 otherwise: a fence that no failover could send).
 *   POST /ride-out {"node": A, "epoch": E}: app machine A, active at epoch E, cannot reach etcd
 *                 and asks whether it may go on serving (src/agent/ride-out.ts). Only A itself may
 *                 ask (its certificate's name), and only an app machine of the cluster. 200
 *                 {"granted": true}: this machine promises not to become active for one lease from
 *                 now; 409 {"granted": false, "reason": ...} otherwise.
 * On a proxy machine the acting observer does not run on (config/schema.ts runsAgent), the same
 * writers read and fence its HAProxy (the app backend) through the agent:
 *   GET  /proxy        {"servers": ServerState[]}: the app backend's servers, from the runtime API.
 *   POST /proxy/maint  {"server": S, "epoch": N}: S to MAINT, its sessions cut. Always safe.
 *   POST /proxy/ready  {"server": S, "epoch": N}: S back to READY, only while etcd's active record
 *                      names S at epoch N (409 otherwise): a late or replayed call cannot put a
 *                      machine back in the rotation after another was activated.
 *   POST /proxy/up     {"server": S, "epoch": N}: S UP at once, not waiting for HAProxy's next check
 *                      (the observer saw S serve at epoch N); the same condition as /proxy/ready.
 * and the :5000 backend for the observer's database release, with "backend": "postgres" (no
 * epoch): `GET /proxy?backend=postgres`, MAINT before a release, and READY (down until its
 * check of Patroni's /primary passes) once the old leader has rejoined.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AgentStatus } from '../model/ha.ts';
import type { MtlsHandler, PeerInfo } from '../mtls/mtls.ts';
import type { ServerState } from '../proxy/runtime.ts';
import { FenceRefused } from './agent.ts';
import type { RideOutAnswer, RideOutRequest } from './ride-out.ts';

/** This machine's HAProxy, as the agent offers it to the observers. */
export interface ProxyControl {
  servers(): Promise<ServerState[]>;
  maint(server: string): Promise<void>;
  /** Throws ReadyRefused when the active record does not name `server` at `epoch`. */
  ready(server: string, epoch: number): Promise<void>;
  /** UP now (its next check is not waited for); throws ReadyRefused like ready. */
  up(server: string, epoch: number): Promise<void>;
  /** The :5000 backend (the database release). */
  db: { servers(): Promise<ServerState[]>; maint(server: string): Promise<void>; ready(server: string): Promise<void> };
}

export class ReadyRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReadyRefused';
  }
}

export interface AgentApiDeps {
  status(): Promise<AgentStatus>;
  roleOk(): Promise<boolean>;
  fence(epoch: number): Promise<void>;
  /** Common names allowed to call write endpoints (and to read the proxy). */
  writers: Set<string>;
  /** Only on a proxy machine (see above). */
  proxy?: ProxyControl;
  /** Only on an app machine: a peer's ride-out request (see above), and the app machines that may ask. */
  rideOut?: { grant(req: RideOutRequest): Promise<RideOutAnswer>; askers: Set<string> };
}

const send = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
};

async function readJson(req: IncomingMessage, maxBytes = 4096): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > maxBytes) throw new Error('body too large');
    chunks.push(c as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

export function agentHandler(d: AgentApiDeps): MtlsHandler {
  return async (req: IncomingMessage, res: ServerResponse, peer: PeerInfo) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/role') {
      const ok = await d.roleOk();
      return send(res, ok ? 200 : 503, { active: ok });
    }
    if (req.method === 'GET' && path === '/status') return send(res, 200, await d.status());
    if (req.method === 'POST' && path === '/fence') {
      if (!d.writers.has(peer.commonName)) return send(res, 403, { error: `${peer.commonName} may not fence; only observer machines and the admin may` });
      let epoch: unknown;
      try {
        epoch = ((await readJson(req)) as { epoch?: unknown }).epoch;
      } catch {
        return send(res, 400, { error: 'body must be JSON {"epoch": N}' });
      }
      if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1) return send(res, 400, { error: 'epoch must be a positive integer' });
      try {
        await d.fence(epoch);
      } catch (err) {
        if (err instanceof FenceRefused) return send(res, 409, { error: `fence refused: ${err.message}` });
        throw err;
      }
      return send(res, 200, { fenced: true, epoch });
    }
    if (req.method === 'POST' && path === '/ride-out') return rideOutCall(d, req, res, peer);
    if (path === '/proxy' || path?.startsWith('/proxy/')) return proxyCall(d, req, res, peer, path);
    send(res, 404, { error: `no ${req.method} ${path}` });
  };
}

async function proxyCall(d: AgentApiDeps, req: IncomingMessage, res: ServerResponse, peer: PeerInfo, path: string): Promise<void> {
  if (!d.proxy) return send(res, 404, { error: 'no HAProxy on this machine for Vigil to control' });
  if (!d.writers.has(peer.commonName)) return send(res, 403, { error: `${peer.commonName} may not use the proxy; only observer machines and the admin may` });
  const db = new URL(req.url ?? '/', 'https://agent').searchParams.get('backend') === 'postgres';
  if (req.method === 'GET' && path === '/proxy') return send(res, 200, { servers: await (db ? d.proxy.db.servers() : d.proxy.servers()) });
  const action = req.method === 'POST' ? ({ '/proxy/maint': 'maint', '/proxy/ready': 'ready', '/proxy/up': 'up' } as const)[path] : undefined;
  if (!action) return send(res, 404, { error: `no ${req.method} ${path}` });
  let body: { server?: unknown; epoch?: unknown; backend?: unknown };
  try {
    body = (await readJson(req)) as typeof body;
  } catch {
    return send(res, 400, { error: 'body must be JSON {"server": "name", "epoch": N} (or {"server": "name", "backend": "postgres"})' });
  }
  const { server, epoch, backend } = body;
  if (typeof server !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(server)) return send(res, 400, { error: 'server must be a machine name' });
  if (backend !== undefined && backend !== 'app' && backend !== 'postgres') return send(res, 400, { error: 'backend must be "app" or "postgres"' });
  if (backend === 'postgres') {
    if (action === 'up') return send(res, 400, { error: 'up is for the app backend only' });
    await (action === 'maint' ? d.proxy.db.maint(server) : d.proxy.db.ready(server));
    return send(res, 200, { server, state: action, backend });
  }
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1) return send(res, 400, { error: 'epoch must be a positive integer' });
  try {
    if (action === 'maint') await d.proxy.maint(server);
    else if (action === 'up') await d.proxy.up(server, epoch);
    else await d.proxy.ready(server, epoch);
  } catch (err) {
    if (err instanceof ReadyRefused) return send(res, 409, { error: `${action} refused: ${err.message}` });
    throw err;
  }
  send(res, 200, { server, state: action, epoch });
}

async function rideOutCall(d: AgentApiDeps, req: IncomingMessage, res: ServerResponse, peer: PeerInfo): Promise<void> {
  if (!d.rideOut) return send(res, 404, { error: 'no application on this machine: only app machines answer a ride-out' });
  let body: { node?: unknown; epoch?: unknown };
  try {
    body = (await readJson(req)) as typeof body;
  } catch {
    return send(res, 400, { error: 'body must be JSON {"node": "name", "epoch": N}' });
  }
  const { node, epoch } = body;
  if (typeof node !== 'string' || typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1)
    return send(res, 400, { error: 'body must be JSON {"node": "name", "epoch": N} with a positive integer epoch' });
  if (peer.commonName !== node || !d.rideOut.askers.has(node))
    return send(res, 403, { error: `${peer.commonName} may not ask for ${node}: only an app machine of this cluster, for itself` });
  const answer = await d.rideOut.grant({ node, epoch });
  send(res, answer.granted ? 200 : 409, answer);
}
