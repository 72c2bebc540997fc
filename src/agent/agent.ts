/**
 * The node agent's core: runs the application's services only while its machine is the active
 * node at the current epoch, as confirmed in etcd within the lease; otherwise stops them by itself
 * (self-fencing). The observer decides; the agent obeys the record and its own clock.
 */
import type { ActiveRecord } from '../model/ha.ts';
import type { ServiceRunner, ServiceState } from './services.ts';

export interface AgentDeps {
  node: string;
  /**
   * A linearizable read of the active record, with a deadline; throws when etcd cannot answer.
   * `sentAtMs` is when the read was sent: the confirmation holds from then, not from the answer.
   */
  confirm(): Promise<{ record: ActiveRecord | null; sentAtMs: number }>;
  /** Present on app machines. */
  services?: ServiceRunner;
  /** The application's own health check on this machine (through nginx and the app to the database). */
  appHealth(): Promise<boolean>;
  /** Runs before the services start for a new epoch (file sync stops the receivers of older pushes). */
  beforeStart?(epoch: number | null): Promise<void>;
  /** Runs at the end of every cycle, whatever started it (timer, watch hint, fence): file sync follows the agent's state here. */
  afterCycle?(): Promise<void>;
  /** Monotonic milliseconds. */
  now(): number;
  log(event: string, fields?: Record<string, unknown>): void;
}

export interface AgentTimers {
  /** How long a confirmation of the active record stays valid. Past it the agent fences itself. */
  leaseMs: number;
}

export class Agent {
  record: ActiveRecord | null = null;
  confirmedAt: number | null = null;
  appHealthy = false;
  services: ServiceState[] = [];
  /** Services may run only at an epoch at or above this one (raised by a fence). */
  private fencedBelow = 0;
  /** The epoch the services were last started for: they are started once per activation. */
  private startedEpoch: number | null = null;
  private reportedDeath = false;
  private busy: Promise<void> = Promise.resolve();
  /** The cycle waiting for the one under way, if any. */
  private queued: Promise<void> | null = null;

  constructor(
    private readonly deps: AgentDeps,
    private readonly timers: AgentTimers,
  ) {}

  /** Active at the current epoch, with a confirmation younger than the lease. */
  isActive(): boolean {
    const d = this.deps;
    return (
      this.record !== null &&
      this.record.node === d.node &&
      this.record.epoch >= this.fencedBelow &&
      this.confirmedAt !== null &&
      d.now() - this.confirmedAt < this.timers.leaseMs
    );
  }

  /** What the proxy's check asks, from the last cycle: serve traffic here? */
  roleOk(): boolean {
    return this.isActive() && this.appHealthy;
  }

  /**
   * The same question with a fresh health check, for the proxy's check itself: HAProxy then
   * sees the application come up (or go down) at its own check interval, not a cycle later.
   */
  async roleCheck(): Promise<boolean> {
    if (!this.isActive()) return false;
    this.appHealthy = await this.deps.appHealth().catch(() => false);
    return this.isActive() && this.appHealthy;
  }

  /** One cycle: confirm the record, then bring the services in line with it. Serialised. */
  tick(): Promise<void> {
    // A cycle already waiting for the one under way serves this call too (it reads the state
    // when it starts): ticks that come faster than cycles end (etcd slow or down) do not pile up.
    if (this.queued) return this.queued;
    const next = this.busy
      .then(() => {
        this.queued = null;
        return this.cycle();
      })
      .catch((err: unknown) => this.deps.log('tick-failed', { error: String(err) }));
    this.queued = next;
    this.busy = next;
    return next;
  }

  /** Resolves when the cycle under way (if any) has finished. */
  settled(): Promise<void> {
    return this.busy;
  }

  /** The observer's fence: stop now, and never serve again below `epoch`. */
  async fence(epoch: number): Promise<void> {
    if (epoch > this.fencedBelow) this.fencedBelow = epoch;
    this.deps.log('fenced', { epoch });
    await this.tick();
  }

  /** A watch event is only a hint: it makes the next cycle come at once, but confirms nothing. */
  hint(record: ActiveRecord | null): void {
    if (record && this.record && record.epoch > this.record.epoch && record.node !== this.deps.node) {
      // A newer epoch names another machine: stop serving without waiting for a confirmation.
      this.record = record;
    }
    void this.tick();
  }

  private async cycle(): Promise<void> {
    const d = this.deps;
    try {
      const { record: r, sentAtMs } = await d.confirm();
      this.confirmedAt = sentAtMs;
      if (r?.epoch !== this.record?.epoch || r?.node !== this.record?.node) d.log('active-record', { node: r?.node ?? null, epoch: r?.epoch ?? null });
      this.record = r;
    } catch (err) {
      if (this.confirmedAt !== null && d.now() - this.confirmedAt >= this.timers.leaseMs && this.services.some((s) => s.running))
        d.log('self-fence', { reason: `could not confirm the active record for ${d.now() - this.confirmedAt} ms`, error: String(err) });
    }
    if (d.services) {
      const want = this.isActive();
      this.services = await d.services.states();
      const running = this.services.some((s) => s.running);
      const complete = this.services.every((s) => s.running);
      const epoch = this.record?.epoch ?? null;
      if (want && !complete && this.startedEpoch !== epoch) {
        d.log('start-services', { epoch });
        this.startedEpoch = epoch;
        this.reportedDeath = false;
        await d.beforeStart?.(epoch);
        await d.services.start();
      } else if (want && !complete) {
        // Not restarted in place: a service that died while active makes this machine fail its
        // checks, and the observer moves the application to a standby. Restarting here would
        // hide a crash loop from the observer and flap between serving and failing.
        if (this.services.some((s) => s.running) || !this.reportedDeath) d.log('service-died', { epoch, services: this.services });
        this.reportedDeath = true;
      } else if (!want && running) {
        this.startedEpoch = null; // stopped on purpose (fenced, moved, lease lost): may start again when active
        d.log('stop-services', { epoch: this.record?.epoch ?? null, active: this.record?.node ?? null });
        await d.services.stop();
      }
      if ((want && !complete) || (!want && running)) this.services = await d.services.states();
    }
    this.appHealthy = this.services.length > 0 && this.services.every((s) => s.running) ? await d.appHealth().catch(() => false) : false;
    await d.afterCycle?.();
  }
}
