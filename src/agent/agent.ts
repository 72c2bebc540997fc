/**
 * The node agent's core: runs the application's services only while its machine is the active
 * node at the current epoch, as confirmed in etcd within the lease; otherwise stops them by itself
 * (self-fencing). The observer decides; the agent obeys the record and its own clock.
 *
 * Handover: a machine activated at a new epoch claims the right to serve in etcd (its key under
 * its own lease, src/etcd/serving.ts) and starts only once no other machine's claim is left. The
 * machine it replaces drops its claim after its services have stopped; one that cannot (dead,
 * paused, cut off from etcd) loses it when its lease expires, which is after it has stopped
 * believing it may serve. So a proxy that still reaches the old machine never sees two serve.
 *
 * Warm standby (docs/application-contract.md): services placed on `every` app machine keep running
 * on a standby; activation then starts only the `active` ones and calls the application's
 * activation hook, renewed every cycle with the lease left. Standing down calls the hook's
 * deactivation and stops the `active` services; when the application cannot confirm it stood down
 * (no answer in time, an error), every service is stopped, as without a warm standby.
 */
import type { ActiveRecord, ServingClaim } from '../model/ha.ts';
import type { Placement, ServiceRunner, ServiceState } from './services.ts';
import { rideOutAnswer, rideOutUntil, type PeerAnswer, type RideOutAnswer, type RideOutRequest } from './ride-out.ts';

/** The application's activation hook (cluster file `application.activation`). */
export interface ActivationHook {
  /** This machine is active at `epoch` for `validForMs` from now, unless renewed. */
  activate(epoch: number, validForMs: number): Promise<void>;
  /** This machine is no longer active; resolves once the application confirmed its background work stopped. */
  deactivate(): Promise<void>;
}

export interface AgentDeps {
  node: string;
  /**
   * A linearizable read of the active record, with a deadline; throws when etcd cannot answer.
   * `sentAtMs` is when the read was sent: the confirmation holds from then, not from the answer.
   */
  confirm(): Promise<{ record: ActiveRecord | null; sentAtMs: number; claims?: ServingClaim[] }>;
  /**
   * App machines: this machine's claim to serve in etcd. `confirm` keeps its lease alive (a
   * confirmation holds only when it did); `claimed` is the epoch the claim in etcd stands for.
   */
  hold?: { readonly claimed: number | null; claim(epoch: number): Promise<void>; release(): Promise<void> };
  /** Present on app machines. */
  services?: ServiceRunner;
  /** The application's activation hook, when the cluster file names one. */
  activation?: ActivationHook;
  /** The application's own health check on this machine (through nginx and the app to the database). */
  appHealth(): Promise<boolean>;
  /** A service's own health check (its `healthUrl`), or undefined when it has none: asked of a standby's warm (`every`) services and the active machine's `active` ones. */
  serviceReady?(name: string): Promise<boolean | undefined>;
  /** Runs before the services start for a new epoch (file sync stops the receivers of older pushes). */
  beforeStart?(epoch: number | null): Promise<void>;
  /** Stores the agent's memory when it changed (see AgentMemory). */
  remember?(m: AgentMemory): Promise<void>;
  /**
   * App machines: the other app machines of the cluster, and a way to ask each one's agent whether
   * this machine may go on serving at `epoch` while etcd does not answer (./ride-out.ts). Resolves
   * with one answer per peer (a peer that cannot be reached: not granted, with the reason).
   */
  rideOut?: { peers: string[]; ask(epoch: number): Promise<PeerAnswer[]> };
  /** Runs at the end of every cycle, whatever started it (timer, watch hint, fence): file sync follows the agent's state here. */
  afterCycle?(): Promise<void>;
  /** Monotonic milliseconds. */
  now(): number;
  log(event: string, fields?: Record<string, unknown>): void;
}

/**
 * What the agent keeps on disk across its restarts (the daemon stores it under /var/lib/vigil):
 * the highest epoch it has seen and the fence it obeys. A fence then survives a restart, and
 * after etcd is rebuilt with no record the observer starts above every epoch any agent saw.
 */
export interface AgentMemory {
  highestEpoch: number;
  fencedBelow: number;
  /**
   * Until when (on the `now()` clock) this machine promised a peer riding out an etcd outage not to
   * become active (./ride-out.ts); absent or 0: no promise. Stored before the promise is given.
   */
  promisedUntilMs?: number;
}

/** A fence for an epoch no record this agent has seen could lead to: refused (409). */
export class FenceRefused extends Error {}

export interface AgentTimers {
  /** How long a confirmation of the active record stays valid. Past it the agent fences itself. */
  leaseMs: number;
}

export class Agent {
  record: ActiveRecord | null = null;
  confirmedAt: number | null = null;
  appHealthy = false;
  services: ServiceState[] = [];
  /** Activated, the machines whose claims this one waits to see gone (see Handover above). */
  waitingFor: string[] = [];
  /** The epoch at which no other machine's claim was left: the handover is done. */
  private clearedEpoch: number | null = null;
  /** Services may run only at an epoch at or above this one (raised by a fence). */
  private fencedBelow: number;
  /** The highest epoch seen in a record or a fence. */
  highestEpoch: number;
  /** The epoch the services were last started for: they are started once per activation. */
  private startedEpoch: number | null = null;
  private reportedDeath = false;
  /**
   * The application may believe this machine active: told so and not told otherwise since (or,
   * at the agent's start, not known). A warm service that may believe so is stood down before
   * this machine's claim is dropped.
   */
  private toldActive: boolean;
  /** The epoch the hook last confirmed an activation for, and its last failure (logged once). */
  private activatedEpoch: number | null = null;
  private activationError: string | null = null;
  private warmStartLogged = false;
  /** The memory on disk is up to date. */
  private stored = true;
  /** Until when this machine may not become active: it promised a peer riding out an etcd outage (now() clock). */
  private promisedUntil: number;
  /** Until when the peers' answers let this machine serve while etcd does not answer (now() clock); null: none. */
  rideOutUntil: number | null = null;
  /** The last ride-out round's refusals, logged when they change. */
  private rideOutRefusal: string | null = null;
  /** A cycle is starting the services (a peer's ride-out is refused meanwhile). */
  private starting = false;
  private busy: Promise<void> = Promise.resolve();
  /** The cycle waiting for the one under way, if any. */
  private queued: Promise<void> | null = null;

  constructor(
    private readonly deps: AgentDeps,
    private readonly timers: AgentTimers,
    memory: AgentMemory = { highestEpoch: 0, fencedBelow: 0 },
  ) {
    this.highestEpoch = memory.highestEpoch;
    this.fencedBelow = memory.fencedBelow;
    this.promisedUntil = memory.promisedUntilMs ?? 0;
    this.toldActive = deps.activation !== undefined;
  }

  /**
   * Active at the current epoch, with a confirmation younger than the lease (or, while etcd does
   * not answer, a ride-out every peer granted), on app machines the handover done, and no promise
   * to a peer riding out an outage in force.
   */
  isActive(): boolean {
    const d = this.deps;
    return (
      this.named() &&
      this.leaseLeftMs() > 0 &&
      d.now() >= this.promisedUntil &&
      (d.hold === undefined || (d.hold.claimed === this.record!.epoch && this.clearedEpoch === this.record!.epoch))
    );
  }

  /**
   * Why this machine is not active, in words (null when it is): what status, doctor and apply show
   * when a machine expected to serve does not.
   */
  whyNotActive(): string | null {
    if (this.isActive()) return null;
    const d = this.deps;
    const r = this.record;
    if (this.confirmedAt === null) return 'has not yet confirmed the active record in etcd';
    if (r === null) return 'the active record in etcd names no machine';
    if (r.node !== d.node) return `the active record names ${r.node} at epoch ${r.epoch}`;
    if (r.epoch < this.fencedBelow) return `fenced below epoch ${this.fencedBelow}; the record is at epoch ${r.epoch}`;
    if (this.leaseLeftMs() === 0)
      return `no confirmation of the active record for ${Math.round(d.now() - this.confirmedAt)} ms (lease ${this.timers.leaseMs} ms)`;
    if (d.now() < this.promisedUntil)
      return `promised a peer riding out an etcd outage not to become active for ${Math.ceil(this.promisedUntil - d.now())} ms more`;
    if (d.hold && d.hold.claimed !== r.epoch) return `its claim to serve at epoch ${r.epoch} is not written in etcd yet`;
    if (this.waitingFor.length) return `waits for ${this.waitingFor.join(', ')} to stop serving (handover)`;
    return `the handover at epoch ${r.epoch} is not done yet`;
  }

  /** The record names this machine at an epoch no fence has closed. */
  private named(): boolean {
    return this.record !== null && this.record.node === this.deps.node && this.record.epoch >= this.fencedBelow;
  }

  /** Milliseconds until the last confirmation, or the ride-out the peers granted since, runs out (0 when it has, or there is none). */
  leaseLeftMs(): number {
    if (this.confirmedAt === null) return 0;
    const until = Math.max(this.confirmedAt + this.timers.leaseMs, this.rideOutUntil ?? -Infinity);
    return Math.max(0, until - this.deps.now());
  }

  /**
   * A peer riding out an etcd outage asks (POST /ride-out): the rule is ./ride-out.ts. A yes is a
   * promise not to become active for one lease from now, stored before it is given; a promise
   * that cannot be stored is not given.
   */
  async grantRideOut(req: RideOutRequest): Promise<RideOutAnswer> {
    const d = this.deps;
    const receivedAt = d.now();
    const services = d.services ? await d.services.states({ fresh: true }) : [];
    const view = { node: d.node, active: this.isActive(), services, toldActive: this.toldActive, record: this.record, highestEpoch: this.highestEpoch };
    const answer = rideOutAnswer(view, req);
    if (!answer.granted) return answer;
    // A start under way began before this request: refused. From here to the promise nothing waits,
    // and a cycle checks isActive() (which counts the promise) right before it starts anything.
    if (this.starting) return { granted: false, reason: `${d.node} is starting its services` };
    this.promisedUntil = Math.max(this.promisedUntil, receivedAt + this.timers.leaseMs);
    this.stored = false;
    try {
      await d.remember?.(this.memory());
      this.stored = true;
    } catch (err) {
      d.log('remember-failed', { error: String(err) });
      return { granted: false, reason: `${d.node} could not store its promise: ${String(err)}` };
    }
    return answer;
  }

  private memory(): AgentMemory {
    return { highestEpoch: this.highestEpoch, fencedBelow: this.fencedBelow, ...(this.promisedUntil > 0 ? { promisedUntilMs: this.promisedUntil } : {}) };
  }

  /**
   * etcd did not answer: while this machine is active, ask every peer whether it may go on
   * serving (./ride-out.ts). Every yes extends the window to the send time plus a lease, less the
   * margin; anything else leaves the lease to run out, as without the ride-out.
   */
  private async rideOut(): Promise<void> {
    const d = this.deps;
    if (!d.rideOut || !this.isActive()) return;
    const epoch = this.record!.epoch;
    const sentAt = d.now();
    const answers = await d.rideOut
      .ask(epoch)
      .catch((err: unknown): PeerAnswer[] => d.rideOut!.peers.map((peer) => ({ peer, granted: false, reason: String(err) })));
    const until = rideOutUntil(d.rideOut.peers, answers, sentAt, this.timers.leaseMs);
    if (until !== null) {
      if (this.rideOutUntil === null) d.log('ride-out', { epoch, peers: d.rideOut.peers, windowMs: Math.round(until - sentAt) });
      this.rideOutUntil = Math.max(this.rideOutUntil ?? -Infinity, until);
      this.rideOutRefusal = null;
      return;
    }
    const refusal = d.rideOut.peers.length
      ? answers
          .filter((a) => !a.granted)
          .map((a) => `${a.peer}: ${a.reason ?? 'no answer'}`)
          .join('; ')
      : 'no other app machine to ask';
    if (refusal !== this.rideOutRefusal)
      d.log('ride-out-refused', { epoch, refusal, action: `self-fence when the lease ends, in ${Math.round(this.leaseLeftMs())} ms` });
    this.rideOutRefusal = refusal;
  }

  /**
   * The lease ran out: stop the services now, not when the cycle waiting on an unanswering etcd
   * gives up. The daemon calls it when leaseLeftMs() has passed; the machine activated in this
   * one's place starts only once etcd has expired this machine's claim, which is no earlier.
   */
  async leaseEnded(): Promise<void> {
    const d = this.deps;
    if (this.isActive() || !d.services) return;
    const states = await d.services.states({ fresh: true });
    if (!this.mayServe(states) || this.isActive()) return;
    d.log('self-fence', { reason: `no confirmation of the active record within the lease (${this.timers.leaseMs} ms)` });
    this.startedEpoch = null;
    this.services = states;
    await this.standDown();
    this.services = await d.services.states();
  }

  /** Something runs that may act as the active machine: an `active` service, or a warm one the application may still believe active. */
  private mayServe(states: ServiceState[]): boolean {
    return states.some((s) => s.running && ((s.runsOn ?? 'active') === 'active' || this.toldActive));
  }

  /**
   * No longer active: the warm services are told so (and keep running) and the `active` ones
   * stop; without the application's confirmation, everything stops (a fence, as without warm services).
   */
  private async standDown(): Promise<void> {
    const d = this.deps;
    const warm = this.services.some((s) => s.running && s.runsOn === 'every');
    if (d.activation && warm) {
      try {
        await d.activation.deactivate();
        this.toldActive = false;
        this.activatedEpoch = null;
        await d.services!.stop('active');
        return;
      } catch (err) {
        d.log('deactivate-failed', { error: String(err), action: 'stopping every service: the application did not confirm its background work stopped' });
      }
    }
    await d.services!.stop('all');
    this.toldActive = false;
    this.activatedEpoch = null;
  }

  /** Active with every service running: (re)tells the application, with the lease left. A failure is logged once; the next cycle tries again. */
  private async activate(epoch: number): Promise<void> {
    const d = this.deps;
    if (!d.activation) return;
    this.toldActive = true;
    try {
      await d.activation.activate(epoch, Math.max(1, Math.floor(this.leaseLeftMs())));
      if (this.activatedEpoch !== epoch) d.log('application-activated', { epoch });
      this.activatedEpoch = epoch;
      this.activationError = null;
    } catch (err) {
      const error = String(err);
      if (error !== this.activationError) d.log('activate-failed', { epoch, error });
      this.activationError = error;
    }
  }

  /**
   * Each running service of `placement` that has a health check of its own, marked ready or not:
   * on a standby its warm (`every`) ones (status and doctor show a standby still starting), on the
   * active machine its `active` ones (an analytics service that runs but does not answer).
   */
  private async readiness(states: ServiceState[], placement: Placement): Promise<ServiceState[]> {
    const ask = this.deps.serviceReady;
    if (!ask) return states;
    return Promise.all(
      states.map(async (s) => {
        if (!s.running || (s.runsOn ?? 'active') !== placement) return s;
        const ready = await ask(s.name).catch(() => false);
        return ready === undefined ? s : { ...s, ready };
      }),
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
    // The observer fences at the epoch of the record it just wrote: at most one above the newest
    // this agent has seen. A higher one would stop this machine for good (until the records
    // catch up), so it is refused: whoever sends it is not carrying out a failover.
    if (epoch > this.highestEpoch + 1) throw new FenceRefused(`epoch ${epoch} is more than one above the newest this agent has seen (${this.highestEpoch})`);
    const raised = epoch > this.fencedBelow;
    if (raised) this.fencedBelow = epoch;
    await this.saw(epoch, raised);
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

  /** Raises the highest epoch seen, and stores the memory when it changed (a failed store is logged; the next change tries again). */
  private async saw(epoch: number, changed = false): Promise<void> {
    if (epoch <= this.highestEpoch && this.stored && !changed) return;
    this.highestEpoch = Math.max(this.highestEpoch, epoch);
    this.stored = false;
    try {
      await this.deps.remember?.(this.memory());
      this.stored = true;
    } catch (err) {
      this.deps.log('remember-failed', { error: String(err) });
    }
  }

  /** Activated: claim the right to serve, and see whether another machine's claim is left. */
  private async handover(claims: ServingClaim[]): Promise<void> {
    const d = this.deps;
    if (!d.hold || !this.named()) {
      this.waitingFor = [];
      return;
    }
    const epoch = this.record!.epoch;
    try {
      await d.hold.claim(epoch);
    } catch (err) {
      d.log('claim-failed', { epoch, error: String(err) });
      return;
    }
    const others = claims.filter((c) => c.node !== d.node).map((c) => c.node);
    if (others.join() !== this.waitingFor.join()) d.log(others.length ? 'handover-wait' : 'handover-done', { epoch, waitingFor: others });
    this.waitingFor = others;
    if (others.length === 0) this.clearedEpoch = epoch;
  }

  private async cycle(): Promise<void> {
    const d = this.deps;
    try {
      const { record: r, sentAtMs, claims } = await d.confirm();
      this.confirmedAt = sentAtMs;
      if (this.rideOutUntil !== null) d.log('ride-out-ended', { reason: 'etcd answers again' });
      this.rideOutUntil = null;
      this.rideOutRefusal = null;
      if (r?.epoch !== this.record?.epoch || r?.node !== this.record?.node) d.log('active-record', { node: r?.node ?? null, epoch: r?.epoch ?? null });
      this.record = r;
      if (r) await this.saw(r.epoch);
      await this.handover(claims ?? []);
    } catch (err) {
      await this.rideOut();
      if (this.confirmedAt !== null && this.leaseLeftMs() === 0 && this.services.some((s) => s.running))
        d.log('self-fence', { reason: `could not confirm the active record for ${Math.round(d.now() - this.confirmedAt)} ms`, error: String(err) });
    }
    if (d.services) {
      const wanted = this.isActive();
      this.services = await d.services.states();
      // Asked again after the wait: the lease may have run out, or a promise to a peer been given, meanwhile.
      const want = wanted && this.isActive();
      const complete = this.services.every((s) => s.running);
      const epoch = this.record?.epoch ?? null;
      let changed = true;
      if (want && !complete && this.startedEpoch !== epoch) {
        d.log('start-services', { epoch });
        this.startedEpoch = epoch;
        this.reportedDeath = false;
        this.starting = true;
        try {
          await d.beforeStart?.(epoch);
          if (this.isActive()) await d.services.start();
          else this.startedEpoch = null; // the lease ran out, or a promise was given, during beforeStart: not started
        } finally {
          this.starting = false;
        }
      } else if (want && !complete) {
        // Not restarted in place: a service that died while active makes this machine fail its
        // checks, and the observer moves the application to a standby. Restarting here would
        // hide a crash loop from the observer and flap between serving and failing.
        if (this.services.some((s) => s.running) || !this.reportedDeath) d.log('service-died', { epoch, services: this.services });
        this.reportedDeath = true;
        changed = false;
      } else if (!want && this.mayServe(this.services)) {
        this.startedEpoch = null; // stopped on purpose (fenced, moved, lease lost): may start again when active
        d.log('stop-services', { epoch: this.record?.epoch ?? null, active: this.record?.node ?? null });
        await this.standDown();
      } else if (!want && this.services.some((s) => !s.running && s.runsOn === 'every')) {
        // A standby keeps its warm services running (started by the agent, not routed to).
        if (!this.warmStartLogged) d.log('start-warm-services', { services: this.services.filter((s) => s.runsOn === 'every').map((s) => s.name) });
        this.warmStartLogged = true;
        await d.services.start('every');
      } else changed = false;
      if (changed) this.services = await d.services.states();
      // A standby's warm services: on the active machine appHealth below already asks the application.
      if (!want) this.services = await this.readiness(this.services, 'every');
      if (this.services.every((s) => s.running || s.runsOn !== 'every')) this.warmStartLogged = false;
      if (want && epoch !== null && this.services.every((s) => s.running)) await this.activate(epoch);
      // Replaced (or fenced) and stood down: the machine activated after this one may start now.
      if (d.hold && !this.named() && !this.mayServe(this.services))
        await d.hold.release().catch((err: unknown) => d.log('release-claim-failed', { error: String(err) }));
    }
    const healthy = this.services.length > 0 && this.services.every((s) => s.running) ? d.appHealth().catch(() => false) : Promise.resolve(false);
    // The active machine's own `active` services with a health check (none: nothing asked), beside appHealth rather than after it.
    if (d.services && this.isActive()) this.services = await this.readiness(this.services, 'active');
    this.appHealthy = await healthy;
    await d.afterCycle?.();
  }
}
