/**
 * Vigil's event history: what happened to the cluster and why, for `vigil events`, the dashboard
 * and alerts. Two sinks: etcd (shared by every observer and the CLI; the newest `keep` are kept,
 * see src/etcd/events.ts for the sequence and pruning) and a local JSON-lines file (one event
 * per line, never pruned by Vigil: logrotate's job), which still records what this process saw
 * while etcd was unreachable, often the most interesting part.
 *
 * ```ts
 * const log = new EventLog(store.events, { file: '/var/log/vigil/events.jsonl' });
 * await log.append({ type: 'failover', node: 'app2', epoch: 8, message: 'app1 failed its health check for 6 s; app2 is active' });
 * const recent = await log.list(20);
 * ```
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CallOptions, EventRecords, StoredEvent, StoreError, Subscription } from '../etcd/store.ts';
import type { VigilEvent } from '../model/ha.ts';
import type { CodedError } from '../util/errors.ts';

export const DEFAULT_EVENTS_FILE = '/var/log/vigil/events.jsonl';
export const DEFAULT_KEEP_EVENTS = 500;

export interface EventLogOptions {
  /** How many events etcd keeps; older ones are deleted as new ones arrive. Default 500. */
  keep?: number;
  /** The JSON-lines file; null for none (the CLI, which only reads). Default /var/log/vigil/events.jsonl. */
  file?: string | null;
}

/** An event to append: `seq` is assigned when stored, `at` defaults to now. */
export type NewEvent = Omit<VigilEvent, 'seq' | 'at'> & { at?: string };

/** The event reached etcd but not the local file; `event` is the stored event. */
export class EventFileError extends Error implements CodedError {
  readonly code = 'EVENT_FILE' as const;

  constructor(
    readonly file: string,
    readonly event: StoredEvent,
    cause: unknown,
  ) {
    super(
      `${file}: cannot append event ${event.seq} (it is stored in etcd): ${(cause as Error).message ?? String(cause)}\n  fix: check that the directory exists and is writable by the user running Vigil, and that the disk is not full`,
      { cause },
    );
    this.name = 'EventFileError';
  }
}

export class EventLog {
  readonly keep: number;
  readonly file: string | null;
  private dirReady: Promise<void> | null = null;
  /** Lines are appended one after another so the file keeps the order of append() calls. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly records: EventRecords,
    opts: EventLogOptions = {},
  ) {
    this.keep = opts.keep ?? DEFAULT_KEEP_EVENTS;
    if (!Number.isInteger(this.keep) || this.keep < 1) throw new RangeError(`EventLog: keep must be a whole number >= 1 (got ${this.keep})`);
    this.file = opts.file === undefined ? DEFAULT_EVENTS_FILE : opts.file;
  }

  /**
   * Stores the event in etcd, then writes it to the file. If etcd fails, the line is written
   * anyway (without `seq`) and the StoreError is thrown; if only the file fails, EventFileError.
   */
  async append(event: NewEvent, opts?: CallOptions): Promise<StoredEvent> {
    const e: VigilEvent = { ...event, at: event.at ?? new Date().toISOString() };
    let stored: StoredEvent;
    try {
      stored = await this.records.append(e, this.keep, opts);
    } catch (err) {
      await this.writeLine(e).catch(() => undefined); // the etcd error is the one to report
      throw err;
    }
    try {
      await this.writeLine(stored);
    } catch (err) {
      throw new EventFileError(this.file ?? '', stored, err);
    }
    return stored;
  }

  /** The newest `limit` events from etcd, oldest first. */
  list(limit = 50, opts?: CallOptions): Promise<StoredEvent[]> {
    return this.records.newest(limit, opts);
  }

  /**
   * For `vigil events --follow`: the newest `backlog` events, then each new one as it is stored,
   * in order and without gaps, until close().
   */
  watch(onEvent: (e: StoredEvent) => void, opts?: CallOptions & { backlog?: number; onError?: (err: StoreError) => void }): Promise<Subscription> {
    return this.records.follow(onEvent, opts);
  }

  private writeLine(e: VigilEvent): Promise<void> {
    const file = this.file;
    if (!file) return Promise.resolve();
    const line = `${JSON.stringify(e)}\n`;
    const next = this.writing.then(async () => {
      this.dirReady ??= mkdir(dirname(file), { recursive: true, mode: 0o755 }).then(() => undefined);
      try {
        await this.dirReady;
      } catch (err) {
        this.dirReady = null; // try again next time
        throw err;
      }
      // One write() of one line with O_APPEND: concurrent writers never interleave inside a line.
      await appendFile(file, line, { mode: 0o644 });
    });
    this.writing = next.catch(() => undefined);
    return next;
  }
}
