/**
 * The reference application's background work and its side of the activation contract
 * (docs/application-contract.md): an SLA timer that runs once a second only while Vigil's agent
 * says this machine is active, and records each run in the database (`sla_runs`: machine, epoch,
 * the database's clock) so the lab's checker can prove it never ran on two machines at once.
 *
 * Three things keep it to one machine, each covering what the one before cannot:
 * - the agent's calls: `active` with an epoch and a validity, renewed every agent cycle, and
 *   `inactive`, answered only once no run is in flight any more;
 * - the validity: a grant the agent does not renew (agent hung, dead, cut off) runs out here on
 *   the app's own monotonic clock, at the latest when the agent's lease does;
 * - the epoch fence in the database: a run writes only while no run of a newer epoch has
 *   (`sla_fence`, one row, locked by the write), so a process paused past its validity and
 *   resumed cannot write beside the new machine. A fenced run turns the job off until a newer
 *   activation.
 */
import type pg from 'pg';
import { DbUnavailableError, describeDbError } from './db.ts';
import type { Logger } from './http.ts';

/** What the agent last said, and until when (monotonic ms) an `active` holds. */
export type Grant = { active: false } | { active: true; epoch: number; untilMs: number };

/** How often the SLA timer runs while active. */
export const SLA_INTERVAL_MS = 1000;

/** One run of the SLA timer: records it under `epoch`; false when a newer epoch has run (fenced). */
export type SlaRun = (node: string, epoch: number) => Promise<boolean>;

/**
 * The fenced write of one run. The UPDATE takes the fence row's lock and passes only for an epoch
 * at or above the newest that ran; `clock_timestamp()` is read after the lock, so the runs'
 * times are in the order the fence let them through.
 */
export function slaRun(pool: pg.Pool): SlaRun {
  return async (node, epoch) => {
    try {
      const { rowCount } = await pool.query(
        `WITH f AS (UPDATE sla_fence SET epoch = $2 WHERE id = 1 AND epoch <= $2 RETURNING epoch)
         INSERT INTO sla_runs (node, epoch, ran_at) SELECT $1, f.epoch, clock_timestamp() FROM f`,
        [node, epoch],
      );
      return (rowCount ?? 0) > 0;
    } catch (err) {
      throw new DbUnavailableError(describeDbError(err), { cause: err });
    }
  };
}

export interface BackgroundOptions {
  node: string;
  run: SlaRun;
  log: Logger;
  /** Monotonic ms (tests pass their own). */
  now?: () => number;
  intervalMs?: number;
}

/**
 * The background work of one process. It starts inactive: a process (re)started by the agent or
 * by hand never runs the job before the agent activates it.
 */
export class Background {
  private grant: Grant = { active: false };
  /** Epochs at or below this one were fenced in the database: not run again. */
  private fencedUpTo = 0;
  private inFlight: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  runs = 0;
  private readonly now: () => number;

  constructor(private readonly o: BackgroundOptions) {
    this.now = o.now ?? (() => performance.now());
  }

  /** Starts the timer (the application calls it once it is up). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs ?? SLA_INTERVAL_MS);
  }

  /** The agent's `active`: run the job at `epoch` for `validForMs` from now, unless renewed. */
  activate(epoch: number, validForMs: number): void {
    const was = this.grant;
    this.grant = { active: true, epoch, untilMs: this.now() + validForMs };
    if (!was.active || was.epoch !== epoch) this.o.log({ event: 'activated', node: this.o.node, epoch, validForMs });
  }

  /** The agent's `inactive`: resolves once no run is in flight, so none runs after the answer. */
  async deactivate(): Promise<void> {
    const was = this.grant;
    this.grant = { active: false };
    await this.inFlight;
    if (was.active) this.o.log({ event: 'deactivated', node: this.o.node, epoch: was.epoch });
  }

  /** Active now: a grant that has not run out, at an epoch the database has not fenced. */
  state(): { active: boolean; epoch: number | null; validForMs: number } {
    const g = this.grant;
    if (!g.active || g.epoch <= this.fencedUpTo || this.now() >= g.untilMs) return { active: false, epoch: g.active ? g.epoch : null, validForMs: 0 };
    return { active: true, epoch: g.epoch, validForMs: Math.round(g.untilMs - this.now()) };
  }

  /** One run when active; a run still in flight (slow database) is not doubled. */
  async tick(): Promise<void> {
    if (this.inFlight || !this.started) return;
    const s = this.state();
    if (!s.active || s.epoch === null) return;
    const epoch = s.epoch;
    this.inFlight = (async () => {
      try {
        if (await this.o.run(this.o.node, epoch)) this.runs++;
        else {
          this.fencedUpTo = Math.max(this.fencedUpTo, epoch);
          this.o.log({ event: 'sla-fenced', node: this.o.node, epoch, reason: 'a newer epoch has run the job: this machine is no longer active' });
        }
      } catch (err) {
        this.o.log({ event: 'sla-failed', node: this.o.node, epoch, error: (err as Error).message });
      }
    })().finally(() => (this.inFlight = null));
    await this.inFlight;
  }

  /** Stops the timer and waits for a run in flight. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.grant = { active: false };
    await this.inFlight;
  }
}
