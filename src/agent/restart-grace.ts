/**
 * A planned restart of the active machine's agent (`vigil apply` changed its files). Without an
 * agent nothing renews the machine's claim in etcd or the dead-man switch's stamp, so one lease
 * (3 s by default) after the old agent stopped the switch stops the application, and the observer,
 * seeing neither the agent nor the application, moves it to a standby. A new agent that takes
 * longer than a lease to start (a loaded machine: 5 s measured in the lab) thus turns a planned
 * restart into an outage and a failover.
 *
 * So when apply has left its mark (PATHS.agentRestartMark, fresh), the agent stopping while its
 * machine is active hands its claim to a lease of RESTART_GRACE_S that nobody renews, and stamps
 * the dead-man switch for the same time, read before the lease was asked for: the application
 * stays up for at most that long without an agent, and never longer than the claim. The rules of
 * the handover still hold: a machine activated meanwhile starts only once the claim is gone, and
 * by then the switch has stopped this one's application. The application's activation is not
 * renewed: its background work pauses until the new agent activates it again.
 *
 * The cost: a machine that fails during the grace keeps its claim until it ends, so a failover
 * in that window takes up to RESTART_GRACE_S longer. Only apply's mark opens the window; a plain
 * `systemctl stop` or restart of the agent behaves as before.
 */

/**
 * How long the application may run without an agent across a planned restart. At a load of 30 an
 * agent held 8 s by an ExecStartPre took 14 s in all (the lab), which outlasted 15 s once.
 */
export const RESTART_GRACE_S = 30;

/** Apply's mark counts only this long after it was written: a mark left behind by an interrupted apply does not open a window later. */
export const RESTART_MARK_FRESH_MS = 60_000;

export interface GraceDeps {
  /** The mark's age in ms (wall clock), or null when there is none. */
  markAgeMs(): Promise<number | null>;
  /** The agent is active at this moment (its services running with a confirmed lease). */
  active(): boolean;
  /** The boot clock now, in centiseconds (the dead-man switch's clock). */
  bootClockCs(): Promise<number>;
  /** Puts the claim under a new lease of `ttlSeconds` (src/etcd/serving.ts `extend`). */
  extendClaim(ttlSeconds: number): Promise<void>;
  /** Writes the dead-man switch's stamp (centiseconds of the boot clock). */
  stamp(untilCs: number): Promise<void>;
  log(event: string, fields?: Record<string, unknown>): void;
}

/**
 * Run by the agent stopping, after its last cycle. Returns whether the grace was given; any failure
 * (etcd not answering) leaves things as they were: the claim and the stamp run out with the lease.
 */
export async function restartGrace(d: GraceDeps): Promise<boolean> {
  const age = await d.markAgeMs();
  if (age === null || age > RESTART_MARK_FRESH_MS || age < -RESTART_MARK_FRESH_MS) return false;
  if (!d.active()) return false;
  // Read before the lease is asked for: the stamp runs out no later than the claim.
  const now = await d.bootClockCs();
  try {
    await d.extendClaim(RESTART_GRACE_S);
  } catch (err) {
    d.log('restart-grace-failed', { error: String(err), action: 'the application stops when the lease runs out, as for an unplanned stop' });
    return false;
  }
  await d.stamp(now + RESTART_GRACE_S * 100);
  d.log('restart-grace', { graceMs: RESTART_GRACE_S * 1000, why: 'apply restarts this agent: the application keeps running until the new agent confirms' });
  return true;
}
