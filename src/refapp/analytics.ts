/**
 * The reference application's second service, standing for the seed's `cm-analytics`: a process
 * of its own (`vigil-refapp --analytics`, vigil-refapp-analytics.service) that the cluster file
 * lists as a service with its own placement (the lab: `runsOn: active`) and health check
 * (`healthUrl`). It reads the tickets from the database through :5000 on a timer, as a reporting
 * service would, and serves on loopback only (config.analyticsPort):
 *
 *   GET /health   200 `{"status":"ok", ...}` once a report has been made (it reached the
 *                 database at least once since it started); 503 `{"status":"starting"}` before
 *   GET /report   the last report: ticket count, newest ticket id, when, and the last error if any
 *
 * It writes nothing: a report made on two machines at once would be harmless, but the service
 * still runs only where its placement says, because the agent starts and stops it (the lab test
 * checks it runs on exactly the active machine after each failover).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import * as db from './db.ts';
import { HttpError, listen, sendJson, stdoutLogger, type Logger } from './http.ts';
import type { RefappConfig } from './properties.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface AnalyticsReport {
  tickets: number;
  newestTicketId: number | null;
  /** When it was made, ISO 8601. */
  at: string;
}

export interface AnalyticsState {
  node: string;
  report: AnalyticsReport | null;
  /** The last report's failure (cleared by the next success): the database unreachable, or its schema not made yet. */
  lastError: string | null;
}

export interface AnalyticsServer {
  port: number;
  state(): AnalyticsState;
  /** Makes a report now (the timer does so every intervalMs). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

/** How often it reports; short, so a newly started service passes its health check within seconds. */
export const ANALYTICS_INTERVAL_MS = 2000;

export async function startAnalytics(config: RefappConfig, o: { log?: Logger; intervalMs?: number; pool?: pg.Pool } = {}): Promise<AnalyticsServer> {
  const log = o.log ?? stdoutLogger;
  const pool = o.pool ?? db.createPool(config.db, `${config.node}-analytics`, log);
  const state: AnalyticsState = { node: config.node, report: null, lastError: null };
  let running: Promise<void> | undefined;
  const refresh = () =>
    (running ??= (async () => {
      try {
        const { rows } = await pool.query<{ tickets: string; newest: string | null }>('SELECT count(*) AS tickets, max(id) AS newest FROM tickets');
        const row = rows[0]!;
        state.report = { tickets: Number(row.tickets), newestTicketId: row.newest === null ? null : Number(row.newest), at: new Date().toISOString() };
        if (state.lastError !== null) log({ event: 'analytics-recovered', node: config.node });
        state.lastError = null;
      } catch (err) {
        const error = db.describeDbError(err);
        if (error !== state.lastError) log({ event: 'analytics-report-failed', node: config.node, error });
        state.lastError = error;
      } finally {
        running = undefined;
      }
    })());
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') throw new HttpError(405, `method ${req.method} not allowed here; use GET`, { allow: 'GET' });
    if (path === '/health') return state.report ? sendJson(res, 200, { status: 'ok', ...state }) : sendJson(res, 503, { status: 'starting', ...state });
    if (path === '/report') return sendJson(res, 200, state);
    throw new HttpError(404, `no route for ${path}; this service answers /health and /report`);
  };
  const server: Server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'internal error');
      if (!res.headersSent) sendJson(res, e.status, { error: e.message, node: config.node }, e.headers);
    }
  });
  try {
    await listen(server, '127.0.0.1', config.analyticsPort);
  } catch (err) {
    if (!o.pool) await pool.end();
    throw new VigilError(
      'USAGE',
      [problem(`127.0.0.1:${config.analyticsPort}`, `cannot listen: ${(err as Error).message}`, 'choose a free analytics.port, or stop what holds it')],
      { cause: err },
    );
  }
  const port = (server.address() as AddressInfo).port;
  log({ event: 'analytics-listening', node: config.node, port });
  void refresh();
  const timer = setInterval(() => void refresh(), o.intervalMs ?? ANALYTICS_INTERVAL_MS);
  return {
    port,
    state: () => ({ ...state }),
    refresh,
    close: async () => {
      clearInterval(timer);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await running;
      if (!o.pool) await pool.end();
    },
  };
}
