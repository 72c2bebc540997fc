/**
 * The reference application's activation endpoint, the application's side of Vigil's activation
 * contract (docs/application-contract.md), on its own loopback port (config.controlPort) that
 * nginx does not proxy:
 *
 *   POST /vigil/activation {"active": true, "epoch": N, "validForMs": M}
 *        run the background work at epoch N for M ms from now (the agent renews it every cycle)
 *        200 {active, epoch, validForMs, node}
 *   POST /vigil/activation {"active": false}
 *        stop the background work; answered only once no run is in flight any more
 *        200 {active: false, ...}
 *   GET  /vigil/activation
 *        200 the current state (also during start-up)
 *
 * Anything else is a 4xx naming the field and what to send instead.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { REFAPP_ACTIVATION_PATH } from '../layout/refapp.ts';
import type { Background } from './background.ts';
import { HttpError, listen, readJson, sendJson, type Logger } from './http.ts';

const MAX_BODY_BYTES = 4096;
/** A grant longer than this is refused: it would outlive any lease the agent can hold. */
const MAX_VALID_FOR_MS = 60_000;

/** The parsed body of a POST, or an HttpError(400) naming the field. */
export function parseActivation(body: unknown): { active: false } | { active: true; epoch: number; validForMs: number } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object such as {"active": false}');
  const b = body as Record<string, unknown>;
  if (b['active'] === false) return { active: false };
  if (b['active'] !== true) throw new HttpError(400, 'field "active" must be true or false');
  const epoch = b['epoch'];
  const validForMs = b['validForMs'];
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1)
    throw new HttpError(400, 'field "epoch" must be a positive integer (the agent\'s activation epoch)');
  if (typeof validForMs !== 'number' || !Number.isInteger(validForMs) || validForMs < 1 || validForMs > MAX_VALID_FOR_MS)
    throw new HttpError(400, `field "validForMs" must be a whole number of milliseconds from 1 to ${MAX_VALID_FOR_MS}`);
  return { active: true, epoch, validForMs };
}

export async function startControl(o: {
  host: string;
  port: number;
  node: string;
  background: Background;
  log: Logger;
}): Promise<{ port: number; close(): Promise<void> }> {
  const answer = (res: ServerResponse) => sendJson(res, 200, { ...o.background.state(), node: o.node });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== REFAPP_ACTIVATION_PATH) throw new HttpError(404, `no route for ${req.method} ${path}; the activation endpoint is ${REFAPP_ACTIVATION_PATH}`);
    if (req.method === 'GET') return answer(res);
    if (req.method !== 'POST') throw new HttpError(405, `method ${req.method} not allowed here; use GET or POST`, { allow: 'GET, POST' });
    const a = parseActivation(await readJson(req, MAX_BODY_BYTES));
    if (a.active) o.background.activate(a.epoch, a.validForMs);
    else await o.background.deactivate();
    answer(res);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : new HttpError(500, 'internal error');
      if (!(err instanceof HttpError)) o.log({ event: 'internal-error', node: o.node, error: String(err) });
      if (!res.headersSent) sendJson(res, e.status, { error: e.message, node: o.node }, e.headers);
    });
  });
  await listen(server, o.host, o.port);
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
