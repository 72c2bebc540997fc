/**
 * The reference application: a small ticket service that stands in for ServiceOps in the lab.
 * Tickets live in PostgreSQL (through HAProxy's :5000 in the cluster), attachments on disk, and
 * `/health` goes through the database so the observer's deep check sees what a user would see.
 *
 * It behaves as a slow application server: for `config.startupMs` after it starts, /health answers
 * 503 ("starting"), and only then may its background work (an SLA timer, src/refapp/background.ts)
 * run, and only while Vigil's agent has activated it (its activation endpoint, src/refapp/control.ts).
 *
 * Routes:
 *   GET  /health                              200 {status:"ok",node} | 503 {status:"down"|"starting",node,error}
 *   POST /api/tickets            {"title"}    201 {id,node}
 *   GET  /api/tickets/:id                     200 {id,title,node,createdAt,attachments}
 *   PUT  /api/tickets/:id/attachments/:name   201 {ticketId,name,size,sha256}   (raw body)
 *   GET  /api/tickets/:id/attachments/:name   200 the bytes
 * Errors are JSON `{error, node}`; any database failure is a quick 503.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { VigilError, problem } from '../util/errors.ts';
import { checkAttachmentName, openAttachment, storeAttachment } from './attachments.ts';
import * as db from './db.ts';
import { HttpError, listen, logRequest, readJson, sendJson, stdoutLogger, type Logger } from './http.ts';
import type { RefappConfig } from './properties.ts';
import { listenHttps, planHttps } from './https.ts';
import { Background, slaRun } from './background.ts';
import { startControl } from './control.ts';

export interface RefappOptions {
  log?: Logger;
  /** How long /health waits for the database before answering 503 (default 1000 ms). */
  healthTimeoutMs?: number;
  /** Largest attachment accepted (default 100 MiB). */
  maxAttachmentBytes?: number;
  /** How long close() lets requests in flight finish before cutting them (default 5000 ms). */
  shutdownGraceMs?: number;
}

export interface RefappServer {
  port: number;
  /** The activation endpoint's port (src/refapp/control.ts). */
  controlPort: number;
  /** The background work (the SLA timer). */
  background: Background;
  /** The HTTPS port while it listens (config.httpsSettings), else null. */
  httpsPort(): number | null;
  /** Reads the HTTPS settings again and reopens the HTTPS port (SIGHUP). */
  reloadHttps(): Promise<void>;
  close(): Promise<void>;
}

interface Ctx {
  config: RefappConfig;
  pool: pg.Pool;
  schema: db.SchemaKeeper;
  log: Logger;
  healthTimeoutMs: number;
  maxAttachmentBytes: number;
  /** performance.now() at which the start-up time is over. */
  upAtMs: number;
}

const MAX_JSON_BYTES = 64 * 1024;
const MAX_TITLE_CHARS = 500;

export async function startRefapp(config: RefappConfig, options: RefappOptions = {}): Promise<RefappServer> {
  const log = options.log ?? stdoutLogger;
  await prepareAttachmentsDir(config.attachmentsDir);
  const pool = db.createPool(config.db, config.node, log);
  const schema = new db.SchemaKeeper(pool, log);
  const ctx: Ctx = {
    config,
    pool,
    schema,
    log,
    healthTimeoutMs: options.healthTimeoutMs ?? 1000,
    maxAttachmentBytes: options.maxAttachmentBytes ?? 100 * 1024 * 1024,
    upAtMs: performance.now() + config.startupMs,
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    logRequest(req, res, config.node, log);
    handle(ctx, req, res).catch((err: unknown) => answerError(ctx, res, err));
  };
  const server = createServer(onRequest);
  try {
    await listen(server, config.http.host, config.http.port);
  } catch (err) {
    await pool.end();
    throw new VigilError(
      'USAGE',
      [problem(`${config.http.host}:${config.http.port}`, `cannot listen: ${(err as Error).message}`, 'choose a free http.port, or stop what holds it')],
      { cause: err },
    );
  }
  // Only after listening: the schema loop must not outlive a server that failed to start.
  schema.start();
  const port = (server.address() as AddressInfo).port;
  log({ event: 'listening', node: config.node, host: config.http.host, port, db: `${config.db.host}:${config.db.port}/${config.db.name}` });
  const background = new Background({ node: config.node, run: slaRun(pool), log });
  let control: Awaited<ReturnType<typeof startControl>>;
  try {
    control = await startControl({ host: '127.0.0.1', port: config.controlPort, node: config.node, background, log });
  } catch (err) {
    await shutdown(ctx, server, 0);
    throw new VigilError(
      'USAGE',
      [problem(`127.0.0.1:${config.controlPort}`, `cannot listen: ${(err as Error).message}`, 'choose a free control.port, or stop what holds it')],
      { cause: err },
    );
  }
  // The background work may run once the start-up time is over (and the agent activated it).
  const upTimer = setTimeout(() => {
    background.start();
    log({ event: 'started', node: config.node, startupMs: config.startupMs });
  }, config.startupMs);
  const https = httpsSide(config, onRequest, log);
  await https.reload();
  const close = once(async () => {
    clearTimeout(upTimer);
    await control.close();
    await background.stop();
    await https.close();
    await shutdown(ctx, server, options.shutdownGraceMs ?? 5000);
  });
  return { port, controlPort: control.port, background, httpsPort: https.port, reloadHttps: https.reload, close };
}

/**
 * The HTTPS port beside the HTTP one, as the settings file says; a problem leaves it closed and
 * logged, never stops the application (src/refapp/https.ts). Reloads run one at a time.
 */
function httpsSide(config: RefappConfig, onRequest: (req: IncomingMessage, res: ServerResponse) => void, log: Logger) {
  let current: { server: HttpsServer; port: number } | null = null;
  let chain: Promise<void> = Promise.resolve();
  const stop = async () => {
    const s = current?.server;
    current = null;
    if (!s) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    s.closeAllConnections();
    await closed;
  };
  const open = async () => {
    await stop();
    if (!config.httpsSettings) return;
    const plan = await planHttps(config.httpsSettings);
    if (!plan.ok) return log({ event: 'https-off', node: config.node, settings: config.httpsSettings, reason: plan.reason });
    try {
      current = await listenHttps(plan, config.http.host, onRequest);
      log({ event: 'https-listening', node: config.node, host: config.http.host, port: current.port });
    } catch (err) {
      log({ event: 'https-off', node: config.node, settings: config.httpsSettings, reason: err instanceof Error ? err.message : String(err) });
    }
  };
  return {
    port: () => current?.port ?? null,
    reload: () => (chain = chain.then(open, open)),
    close: () => (chain = chain.then(stop, stop)),
  };
}

async function prepareAttachmentsDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o750 });
  } catch (err) {
    throw new VigilError(
      'USAGE',
      [problem(dir, `cannot create the attachments directory: ${(err as Error).message}`, 'create it, owned by the user the app runs as')],
      { cause: err },
    );
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}

/** Stops accepting, lets requests in flight finish (up to the grace time), then closes the pool. */
async function shutdown(ctx: Ctx, server: Server, graceMs: number): Promise<void> {
  ctx.schema.stop();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const cutter = setTimeout(() => server.closeAllConnections(), graceMs);
  await closed;
  clearTimeout(cutter);
  await ctx.pool.end();
  ctx.log({ event: 'stopped', node: ctx.config.node });
}

const TICKETS = /^\/api\/tickets\/?$/;
const TICKET = /^\/api\/tickets\/([^/]+)$/;
// The name is everything after attachments/, slashes included, so `a/../b` gets a clear 400.
const ATTACHMENT = /^\/api\/tickets\/([^/]+)\/attachments\/(.+)$/;

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // No URL normalisation on purpose: `..` segments must reach the name check, not be resolved.
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  const method = req.method ?? 'GET';
  let m: RegExpExecArray | null;
  if (path === '/health') return route(method, ['GET', 'HEAD'], () => health(ctx, res));
  if (TICKETS.test(path)) return route(method, ['POST'], () => createTicket(ctx, req, res));
  if ((m = TICKET.exec(path))) return route(method, ['GET', 'HEAD'], () => getTicket(ctx, res, ticketId(m?.[1])));
  if ((m = ATTACHMENT.exec(path))) {
    const id = ticketId(m[1]);
    const name = checkAttachmentName(m[2] ?? '');
    return route(method, ['GET', 'HEAD', 'PUT'], () => (method === 'PUT' ? putAttachment(ctx, req, res, id, name) : getAttachment(ctx, res, id, name)));
  }
  throw new HttpError(404, `no route for ${method} ${path}`);
}

function route(method: string, allowed: string[], fn: () => Promise<void>): Promise<void> {
  if (!allowed.includes(method)) {
    throw new HttpError(405, `method ${method} not allowed here; use ${allowed.join(' or ')}`, { allow: allowed.join(', ') });
  }
  return fn();
}

function ticketId(raw: string | undefined): number {
  // bigserial ids; 15 digits stay exact in a JS number.
  if (!raw || !/^[1-9]\d{0,14}$/.test(raw)) throw new HttpError(404, 'no such ticket: ids are positive integers');
  return Number(raw);
}

function answerError(ctx: Ctx, res: ServerResponse, err: unknown): void {
  const node = ctx.config.node;
  let status = 500;
  let message = 'internal error';
  let headers: Record<string, string> = {};
  if (err instanceof HttpError) {
    ({ status, message, headers } = err);
  } else if (err instanceof db.DbUnavailableError) {
    status = 503;
    message = `database unavailable: ${err.message}`;
    headers = { 'retry-after': '1' };
  } else {
    ctx.log({ event: 'internal-error', node, error: err instanceof Error ? err.message : String(err) });
  }
  if (res.headersSent) {
    res.destroy(); // a broken stream is the only honest signal left
    return;
  }
  // A body we did not read (e.g. refused upload) would otherwise be drained at the client's pace.
  if (!res.req.complete) headers = { ...headers, connection: 'close' };
  sendJson(res, status, { error: message, node }, headers);
}

async function health(ctx: Ctx, res: ServerResponse): Promise<void> {
  const node = ctx.config.node;
  try {
    const leftMs = ctx.upAtMs - performance.now();
    if (leftMs > 0) {
      sendJson(res, 503, { status: 'starting', node, error: `starting: up in ${Math.ceil(leftMs / 1000)} s` }, { 'retry-after': '1' });
      return;
    }
    requireSchema(ctx);
    await withDeadline(db.checkDatabase(ctx.pool), ctx.healthTimeoutMs);
    sendJson(res, 200, { status: 'ok', node });
  } catch (err) {
    sendJson(res, 503, { status: 'down', node, error: err instanceof Error ? err.message : String(err) });
  }
}

/** Rejects after `ms`; the late promise's own failure is swallowed so it cannot go unhandled. */
async function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new db.DbUnavailableError(`database did not answer within ${ms} ms`)), ms);
  });
  p.catch(() => undefined);
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function requireSchema(ctx: Ctx): void {
  if (!ctx.schema.ready) throw new db.DbUnavailableError(`schema not ready: ${ctx.schema.lastError}`);
}

async function createTicket(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJson(req, MAX_JSON_BYTES);
  const title = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>)['title'] : undefined;
  if (typeof title !== 'string' || title.trim() === '') {
    throw new HttpError(400, 'field "title" is required and must be a non-empty string, e.g. {"title": "printer on fire"}');
  }
  if (title.length > MAX_TITLE_CHARS) throw new HttpError(400, `field "title" is longer than ${MAX_TITLE_CHARS} characters`);
  requireSchema(ctx);
  // The INSERT runs in autocommit: the promise resolves only after COMMIT, so 201 means stored.
  const id = await db.insertTicket(ctx.pool, title.trim(), ctx.config.node);
  sendJson(res, 201, { id, node: ctx.config.node }, { location: `/api/tickets/${id}` });
}

async function getTicket(ctx: Ctx, res: ServerResponse, id: number): Promise<void> {
  requireSchema(ctx);
  const ticket = await db.findTicket(ctx.pool, id);
  if (!ticket) throw new HttpError(404, `no ticket ${id}`);
  sendJson(res, 200, ticket);
}

async function putAttachment(ctx: Ctx, req: IncomingMessage, res: ServerResponse, id: number, name: string): Promise<void> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > ctx.maxAttachmentBytes) throw new HttpError(413, `attachment over ${ctx.maxAttachmentBytes} bytes`);
  requireSchema(ctx);
  // Checked before reading the body, so no file is written for a ticket that does not exist.
  if (!(await db.ticketExists(ctx.pool, id))) throw new HttpError(404, `no ticket ${id}`);
  const file = await storeAttachment(ctx.config.attachmentsDir, id, name, req, ctx.maxAttachmentBytes);
  // File first, row second: if the DB write fails the file is an unlisted orphan, never a row
  // pointing at a missing file. The client gets 503 and can upload again.
  await db.upsertAttachment(ctx.pool, id, name, file);
  sendJson(res, 201, { ticketId: id, name, ...file, node: ctx.config.node }, { location: `/api/tickets/${id}/attachments/${encodeURIComponent(name)}` });
}

async function getAttachment(ctx: Ctx, res: ServerResponse, id: number, name: string): Promise<void> {
  requireSchema(ctx);
  const row = await db.findAttachment(ctx.pool, id, name);
  if (!row) throw new HttpError(404, `ticket ${id} has no attachment ${JSON.stringify(name)}`);
  const file = await openAttachment(ctx.config.attachmentsDir, id, name);
  if (!file) {
    // Recorded in the database but absent here: e.g. file sync had not caught up before a failover.
    ctx.log({ event: 'attachment-missing', node: ctx.config.node, ticketId: id, name });
    throw new HttpError(404, `attachment ${JSON.stringify(name)} of ticket ${id} is recorded but its file is missing on node ${ctx.config.node}`);
  }
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': file.size,
    'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
    'x-content-sha256': row.sha256,
    etag: `"${row.sha256}"`,
  });
  if (res.req.method === 'HEAD') {
    file.stream.destroy();
    res.end();
    return;
  }
  await pipeline(file.stream, res);
}
