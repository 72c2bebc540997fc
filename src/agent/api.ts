/**
 * The agent's HTTPS API (mutual TLS under the cluster CA; see src/mtls/mtls.ts):
 *   GET  /role    200 only while this machine is active at the current epoch and the app is healthy
 *                 (HAProxy's app backend checks it); 503 otherwise.
 *   GET  /status  AgentStatus, for the observer, `vigil status` and doctor.
 *   POST /fence   {"epoch": N}: stop the services now and never serve below epoch N. Only observer
 *                 machines and the admin may call it, and only for an epoch at most one above the
 *                 newest this agent has seen (409 otherwise: a fence that no failover could send).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AgentStatus } from '../model/ha.ts';
import type { MtlsHandler, PeerInfo } from '../mtls/mtls.ts';
import { FenceRefused } from './agent.ts';

export interface AgentApiDeps {
  status(): Promise<AgentStatus>;
  roleOk(): Promise<boolean>;
  fence(epoch: number): Promise<void>;
  /** Common names allowed to call write endpoints. */
  writers: Set<string>;
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
    send(res, 404, { error: `no ${req.method} ${path}` });
  };
}
