/**
 * A client that writes through the proxy's :5000 as the application does and remembers exactly
 * which writes the database acknowledged: the probe for failover tests and benchmarks.
 */
import pg from 'pg';
import { sleep } from '../util/exec.ts';

export interface WriteSample {
  /** performance.now() when the write was acknowledged. */
  atMs: number;
  seq: number;
  /** Address of the PostgreSQL server that committed it. */
  server: string;
}

export interface WriterOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  intervalMs?: number;
}

export class AckWriter {
  readonly acked: WriteSample[] = [];
  /** performance.now() of each write that failed (no answer, refused, an error). */
  readonly failedAtMs: number[] = [];
  failures = 0;
  private seq = 0;
  private stopped = false;
  private loop?: Promise<void>;
  private client?: pg.Client;

  constructor(private readonly o: WriterOptions) {}

  async prepare(): Promise<void> {
    // Before any fault: no need for the write's 1 s deadline, and a loaded host (load 27 on two
    // cores) has missed 10 of those in a row; each attempt may take 5 s.
    const c = await this.connectPatiently();
    await c.query('CREATE TABLE IF NOT EXISTS vigil_acks (seq bigint PRIMARY KEY, at timestamptz DEFAULT now())');
    // A writer after an earlier one on the same table goes on from its last number.
    const { rows } = await c.query<{ last: string }>('SELECT coalesce(max(seq), 0) AS last FROM vigil_acks');
    this.seq = Number(rows[0]?.last ?? 0);
  }

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }

  /** The first write acknowledged after `sinceMs`, optionally by a server other than `notBy`. */
  /**
   * The first write acknowledged (by any server) after the first one that failed since `sinceMs`:
   * when writes came back after an outage that began then, wherever they went. Undefined while
   * none has come back; `null` when no write failed at all.
   */
  resumedAfter(sinceMs: number): WriteSample | null | undefined {
    const firstFailure = this.failedAtMs.find((t) => t > sinceMs);
    if (firstFailure === undefined) return null;
    return this.acked.find((s) => s.atMs > firstFailure);
  }

  firstAfter(sinceMs: number, notBy?: string): WriteSample | undefined {
    return this.acked.find((s) => s.atMs > sinceMs && s.server !== notBy);
  }

  /** Sequence numbers acknowledged but absent from the database now. */
  async missing(): Promise<number[]> {
    const c = await this.connectPatiently();
    try {
      const { rows } = await c.query<{ seq: string }>('SELECT seq FROM vigil_acks');
      const present = new Set(rows.map((r) => Number(r.seq)));
      return this.acked.map((s) => s.seq).filter((s) => !present.has(s));
    } finally {
      this.client = undefined;
      await c.end().catch(() => {});
    }
  }

  /** A connection outside a fault (before it, or once the cluster is whole again): 10 tries of 5 s each, 0.5 s apart. */
  private async connectPatiently(): Promise<pg.Client> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.connect(5000);
      } catch (err) {
        if (attempt >= 10)
          throw new Error(`no connection to ${this.o.host}:${this.o.port} in ${attempt} tries of 5 s: ${(err as Error).message}`, { cause: err });
        await sleep(500);
      }
    }
  }

  private async connect(timeoutMs = 1000): Promise<pg.Client> {
    if (this.client) return this.client;
    const c = new pg.Client({ ...this.o, connectionTimeoutMillis: timeoutMs, query_timeout: 3000 });
    c.on('error', () => {}); // a cut session fails the pending query; that is where it is handled
    try {
      await c.connect();
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    this.client = c;
    return c;
  }

  private async run(): Promise<void> {
    const interval = this.o.intervalMs ?? 50;
    while (!this.stopped) {
      const seq = ++this.seq;
      try {
        const c = await this.connect();
        const { rows } = await c.query<{ server: string }>('INSERT INTO vigil_acks (seq) VALUES ($1) RETURNING inet_server_addr()::text AS server', [seq]);
        this.acked.push({ atMs: performance.now(), seq, server: (rows[0]?.server ?? '').replace(/\/32$/, '') });
      } catch {
        this.failures++;
        this.failedAtMs.push(performance.now());
        const c = this.client;
        this.client = undefined;
        await c?.end().catch(() => {});
      }
      await new Promise((r) => setTimeout(r, interval));
    }
  }
}
