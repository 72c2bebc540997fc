/**
 * The database machine's fence against a stale primary (failure-semantics.md, "A stale primary").
 *
 * Patroni decides who is primary; this guards against a Patroni that can no longer be trusted to
 * act on that decision. When PostgreSQL runs as a primary on this machine while etcd says another
 * member holds Patroni's leader key, or while no member holds it and the Patroni here has not
 * passed its own liveness check for a lease (`ttl`), the agent ends Patroni and PostgreSQL at once
 * with SIGKILL (a paused process is ended too) and lets the service manager start Patroni again,
 * which comes back as a replica of whoever holds the key.
 *
 * Why: Patroni 3.0.0 to 3.0.2 renew the leader key with a plain put. One that was paused (the
 * process, PostgreSQL under it, or the machine) resumes believing it leads and overwrites the new
 * leader's key; the new primary steps down and is rewound, and every write it acknowledged is
 * gone. Later versions write the key in a transaction, but a stale primary that is left running
 * still holds locks, connections and a timeline of its own; ending it is right on every version.
 *
 * What it never does: act without a linearizable answer from etcd (cut off from etcd, Patroni's
 * own rules keep a primary from acknowledging writes without its synchronous standby), act while
 * Patroni's maintenance mode is on (the operator has taken PostgreSQL in hand), or act on
 * observations older than `maxAgeMs` (the agent itself was paused between looking and acting).
 */
import type { PatroniView } from '../etcd/store.ts';

export interface PostgresState {
  /** The postmaster named in the data directory's postmaster.pid is alive. */
  running: boolean;
  /** It runs without standby.signal or recovery.signal: a primary (PostgreSQL 12 and later). */
  primary: boolean;
}

export interface FenceObservation {
  node: string;
  postgres: PostgresState;
  /** Patroni's keys in etcd; null when etcd gave no answer in time. */
  patroni: PatroniView | null;
  /** How long the local Patroni has not passed its liveness check (or since the agent started). */
  patroniSilentMs: number;
  /** Patroni's leader lease. */
  ttlMs: number;
}

export type FenceVerdict = { fence: false; why: string } | { fence: true; reason: string };

const isPrimary = (p: PostgresState) => p.running && p.primary;

/** Pure: whether the PostgreSQL on this machine is a stale primary that must be ended now. */
export function fenceVerdict(o: FenceObservation): FenceVerdict {
  if (!o.postgres.running) return { fence: false, why: 'PostgreSQL is not running' };
  if (!o.postgres.primary) return { fence: false, why: 'PostgreSQL is a replica' };
  if (!o.patroni) return { fence: false, why: 'etcd did not answer: nothing is known about the leader key' };
  if (o.patroni.paused) return { fence: false, why: "Patroni's maintenance mode is on" };
  if (o.patroni.leader === o.node) return { fence: false, why: 'this machine holds the leader key' };
  if (o.patroni.leader !== null) return { fence: true, reason: `PostgreSQL runs as primary here while ${o.patroni.leader} holds the leader key` };
  if (o.patroniSilentMs >= o.ttlMs)
    return {
      fence: true,
      reason: `PostgreSQL runs as primary here, no member holds the leader key, and Patroni here has not passed its liveness check for ${(o.patroniSilentMs / 1000).toFixed(1)} s`,
    };
  return { fence: false, why: 'no member holds the leader key; Patroni here answered within its lease' };
}

export interface DbFenceDeps {
  node: string;
  /** Patroni's keys in etcd, one linearizable read with a short deadline; throws when etcd cannot answer. */
  readPatroni(): Promise<PatroniView>;
  /** Whether the local Patroni passes its liveness check (GET /liveness answers 200). */
  patroniLive(): Promise<boolean>;
  postgres(): Promise<PostgresState>;
  /** Ends Patroni and PostgreSQL now; returns what it ended, for the log. */
  kill(): Promise<string[]>;
  /** Reported once per fence: the event log and the agent's log. */
  fenced(reason: string, killed: string[]): void;
  /**
   * The kernel-kept lease on Patroni's ways to etcd and from HAProxy (patroni-gate.ts), for the
   * Patroni versions that overwrite a new leader's key: renewed only after a fresh look found no
   * stale primary, counted from that look (wall-clock ms).
   */
  gate?: { renew(decidedAtMs: number): Promise<void> };
  /** Monotonic milliseconds. */
  now(): number;
  /** Wall-clock milliseconds (the gate's deadline is the kernel's wall clock). */
  wallNow(): number;
  log(event: string, fields?: Record<string, unknown>): void;
}

export class DbFence {
  private lastLiveAt: number;
  private renewedAt = -Infinity;
  private busy: Promise<void> | null = null;
  /** How many times this agent fenced, and why the last time. */
  fences = 0;
  lastReason: string | null = null;

  constructor(
    private readonly deps: DbFenceDeps,
    private readonly timers: { ttlMs: number; maxAgeMs: number; renewEveryMs?: number },
  ) {
    this.lastLiveAt = deps.now();
  }

  /** Resolves when the look under way (if any) has finished. */
  async settled(): Promise<void> {
    await this.busy;
  }

  /** One look and, if needed, the fence. Ticks that come while one runs are dropped. */
  tick(): Promise<void> {
    this.busy ??= this.check()
      .catch((err: unknown) => this.deps.log('db-fence-failed', { error: String(err) }))
      .finally(() => (this.busy = null));
    return this.busy;
  }

  private async check(): Promise<void> {
    const d = this.deps;
    if (!isPrimary(await d.postgres())) {
      // Nothing here can be a stale primary, so etcd and Patroni need not be asked (the cost of
      // the fence on a replica is two file reads). Patroni's silence counts only while PostgreSQL
      // runs as a primary here: one that has just been promoted is not "silent since long ago".
      this.lastLiveAt = d.now();
      await this.renew(d.now());
      return;
    }
    const [live, patroni] = await Promise.all([d.patroniLive().catch(() => false), d.readPatroni().catch(() => null)]);
    if (live) this.lastLiveAt = d.now();
    // Read again, last, so the state acted on is the newest.
    const postgres = await d.postgres();
    const verdict = fenceVerdict({ node: d.node, postgres, patroni, patroniSilentMs: d.now() - this.lastLiveAt, ttlMs: this.timers.ttlMs });
    // Only a fresh answer from etcd vouches for what Patroni may do next: not a failed read (the
    // agent's own connection may be the one that is broken), not one from before a pause.
    const age = patroni ? d.now() - patroni.sentAtMs : Infinity;
    if (!verdict.fence) {
      if (age <= this.timers.maxAgeMs) await this.renew(patroni!.sentAtMs);
      return;
    }
    if (age > this.timers.maxAgeMs) {
      // The agent was held up (paused, starved) between asking etcd and now: look again first.
      d.log('db-fence-deferred', { reason: verdict.reason, observationAgeMs: Math.round(age) });
      return;
    }
    const killed = await d.kill();
    this.fences++;
    this.lastReason = verdict.reason;
    d.fenced(verdict.reason, killed);
  }

  /** Renews the gate (if any, and due) for a lease counted from `decidedAt` (monotonic ms of the look). */
  private async renew(decidedAt: number): Promise<void> {
    const d = this.deps;
    if (!d.gate || d.now() - this.renewedAt < (this.timers.renewEveryMs ?? 1000)) return;
    await d.gate.renew(d.wallNow() - (d.now() - decidedAt));
    this.renewedAt = d.now();
  }
}
