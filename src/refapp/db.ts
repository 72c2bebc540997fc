/**
 * Database access for the reference app. In the cluster the app reaches PostgreSQL through
 * HAProxy's :5000, which sends it to the current Patroni primary and cuts every session when the
 * primary changes. So every timeout here is short and every failure becomes a DbUnavailableError
 * (HTTP 503) quickly: during a failover a client should get a fast, honest error and retry, never
 * a request that hangs or a process that dies.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from './http.ts';
import type { RefappConfig } from './properties.ts';

export const DB_TIMEOUTS = {
  /** Connecting, or waiting for a free pooled client. */
  connectMs: 1000,
  /** Server side: a statement running longer than this is cancelled by PostgreSQL itself. */
  statementMs: 2000,
  /** Client side: covers a server that stopped answering (paused, partitioned). */
  queryMs: 2500,
  /** Idle pooled connections are closed soon, so few stale ones survive a failover. */
  idleMs: 5000,
} as const;

/** The database failed or did not answer; the request may be retried. */
export class DbUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DbUnavailableError';
  }
}

export function createPool(db: RefappConfig['db'], node: string, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    host: db.host,
    port: db.port,
    database: db.name,
    user: db.user,
    password: db.password,
    application_name: `vigil-refapp@${node}`,
    max: 10,
    connectionTimeoutMillis: DB_TIMEOUTS.connectMs,
    idleTimeoutMillis: DB_TIMEOUTS.idleMs,
    statement_timeout: DB_TIMEOUTS.statementMs,
    query_timeout: DB_TIMEOUTS.queryMs,
    idle_in_transaction_session_timeout: 5000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 1000,
  });
  // An idle client whose connection HAProxy cut emits 'error' here; without this listener the
  // process would crash. pg-pool has already discarded the client, so logging is all there is to do.
  pool.on('error', (err) => log({ event: 'db-connection-lost', node, error: err.message }));
  return pool;
}

/** Runs one statement; in autocommit it has committed by the time the promise resolves. */
async function run<R extends pg.QueryResultRow>(pool: pg.Pool, text: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    // pool.query releases the client with the error on failure, so a broken connection is
    // destroyed instead of being handed to the next request.
    return await pool.query<R>(text, params);
  } catch (err) {
    throw new DbUnavailableError(describeDbError(err), { cause: err });
  }
}

export function describeDbError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? `${err.message} (${code})` : err.message;
}

const SCHEMA = `
  BEGIN;
  -- Two app nodes may start at once: serialise, or CREATE ... IF NOT EXISTS can still collide.
  SELECT pg_advisory_xact_lock(7231001);
  CREATE TABLE IF NOT EXISTS tickets (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    node text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS attachments (
    ticket_id bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    name text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, name)
  );
  -- The SLA timer's runs (src/refapp/background.ts): which machine, at which activation epoch,
  -- on the database's clock; the fence row holds the newest epoch that ran.
  CREATE TABLE IF NOT EXISTS sla_runs (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    epoch bigint NOT NULL,
    ran_at timestamptz NOT NULL
  );
  CREATE TABLE IF NOT EXISTS sla_fence (
    id int PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL
  );
  INSERT INTO sla_fence (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
  COMMIT;`;

/**
 * Creates the schema, retrying in the background until it succeeds: the app may start before
 * the database (boot order, failover in progress) and must come up by itself once it is there.
 */
export class SchemaKeeper {
  ready = false;
  lastError = 'schema not created yet';
  private readonly stopper = new AbortController();

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopper.abort();
  }

  private async loop(): Promise<void> {
    for (let attempt = 1, delay = 250; !this.stopper.signal.aborted; attempt++, delay = Math.min(delay * 2, 2000)) {
      try {
        // A multi-statement string runs as one simple query: all of it commits, or none.
        await run(this.pool, SCHEMA);
        this.ready = true;
        this.log({ event: 'schema-ready', attempt });
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
        this.log({ event: 'schema-retry', attempt, error: this.lastError, retryInMs: delay });
      }
      await sleep(delay, undefined, { signal: this.stopper.signal }).catch(() => undefined);
    }
  }
}

/** Throws unless a query goes through and lands on a writable primary. */
export async function checkDatabase(pool: pg.Pool): Promise<void> {
  const { rows } = await run<{ standby: boolean; read_only: string }>(
    pool,
    "SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') AS read_only",
  );
  const row = rows[0];
  if (!row || row.standby || row.read_only === 'on') {
    throw new DbUnavailableError('database is read-only: connected to a standby, not the primary');
  }
}

export interface Ticket {
  id: number;
  title: string;
  node: string;
  createdAt: string;
  attachments: string[];
}

export interface AttachmentRow {
  size: number;
  sha256: string;
}

export async function insertTicket(pool: pg.Pool, title: string, node: string): Promise<number> {
  const { rows } = await run<{ id: string }>(pool, 'INSERT INTO tickets (title, node) VALUES ($1, $2) RETURNING id', [title, node]);
  return Number(rows[0]?.id);
}

export async function findTicket(pool: pg.Pool, id: number): Promise<Ticket | null> {
  const { rows } = await run<{ id: string; title: string; node: string; created_at: Date; attachments: string[] }>(
    pool,
    `SELECT t.id, t.title, t.node, t.created_at,
            coalesce(array_agg(a.name ORDER BY a.name) FILTER (WHERE a.name IS NOT NULL), '{}') AS attachments
       FROM tickets t LEFT JOIN attachments a ON a.ticket_id = t.id
      WHERE t.id = $1
      GROUP BY t.id`,
    [id],
  );
  const r = rows[0];
  if (!r) return null;
  return { id: Number(r.id), title: r.title, node: r.node, createdAt: r.created_at.toISOString(), attachments: r.attachments };
}

export async function ticketExists(pool: pg.Pool, id: number): Promise<boolean> {
  const { rowCount } = await run(pool, 'SELECT 1 FROM tickets WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}

/** Records (or replaces) an attachment; a second upload under the same name overwrites. */
export async function upsertAttachment(pool: pg.Pool, ticketId: number, name: string, file: AttachmentRow): Promise<void> {
  await run(
    pool,
    `INSERT INTO attachments (ticket_id, name, size, sha256) VALUES ($1, $2, $3, $4)
     ON CONFLICT (ticket_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, created_at = now()`,
    [ticketId, name, file.size, file.sha256],
  );
}

export async function findAttachment(pool: pg.Pool, ticketId: number, name: string): Promise<AttachmentRow | null> {
  const { rows } = await run<{ size: string; sha256: string }>(pool, 'SELECT size, sha256 FROM attachments WHERE ticket_id = $1 AND name = $2', [
    ticketId,
    name,
  ]);
  const r = rows[0];
  return r ? { size: Number(r.size), sha256: r.sha256 } : null;
}
