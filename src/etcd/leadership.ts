/**
 * Observer leadership: one key, `observer/leader`, created only if absent (txn on
 * create_revision == 0) and attached to a lease this process keeps alive. Not etcd3's Election
 * helper: a plain leased key gives a fencing token (the key's create revision) that other
 * transactions can compare against, and its rules fit in this file.
 *
 * Timing, the part that matters for "never two leaders": etcd expires the lease TTL seconds
 * after it *received* the last keepalive; we count from when we *sent* it, which is earlier, and
 * step down a safety margin before that. So a leader that is cut off from etcd stops believing
 * it leads before etcd can hand the key to someone else (clocks advance at about the same rate;
 * their offset does not matter since only durations are compared).
 */
import { castGrpcError, EtcdLeaseInvalidError, type Etcd3, type IKeyValue, type Namespace } from 'etcd3';
import { KEYS, type ObserverLeader } from '../model/ha.ts';
import type { CallOptions, Caller } from './call.ts';
import { follow, type Subscription } from './follow.ts';
import { decode, encode, schemas } from './records.ts';

/**
 * A campaign for observer leadership. It keeps campaigning until resign(): after losing the
 * lead it tries again, and a follower takes over as soon as the key is gone.
 *
 * ```ts
 * const lead = await store.campaign('obs-1', os.hostname(), 10);
 * lead.onLost((why) => abortCurrentAction(why));
 * if (lead.isLeader()) await act();
 * ```
 */
export interface Leadership {
  readonly id: string;
  /** True only while the lease is certainly alive on etcd's side (see the timing note above). */
  isLeader(): boolean;
  /** Called each time this campaigner becomes leader. Returns an unsubscribe function. */
  onElected(cb: () => void): () => void;
  /**
   * Called each time the lead ends other than by resign(): the keepalive went unanswered for
   * too long, etcd said the lease is gone, or the key was deleted or replaced.
   */
  onLost(cb: (reason: string) => void): () => void;
  /** Stops campaigning and revokes the lease, which deletes the key if this process held it. */
  resign(opts?: CallOptions): Promise<void>;
  /** Who holds the key now, as etcd says (a linearizable read). */
  current(opts?: CallOptions): Promise<ObserverLeader | null>;
  /** While leading, the key's create revision: it differs for each spell of leadership. */
  token(): string | null;
}

interface Held {
  leaseId: string;
  /** The key's create revision: the fencing token. */
  createRevision: string;
  /** performance.now() after which etcd may have expired the lease. */
  validUntilMs: number;
}

export interface CampaignDeps {
  client: Etcd3;
  ns: Namespace;
  caller: Caller;
}

const KEY = KEYS.observerLeader;

export class Campaign implements Leadership {
  private state: 'follower' | 'leader' | 'resigned' = 'follower';
  private held: Held | null = null;
  private sub: Subscription | null = null;
  private keepTimer: NodeJS.Timeout | undefined;
  private lossTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempting = false;
  private kickPending = false;
  private readonly electedCbs = new Set<() => void>();
  private readonly lostCbs = new Set<(reason: string) => void>();
  private readonly ttlMs: number;
  /** Step down this long before the lease could expire: timer lateness, GC pauses. */
  private readonly marginMs: number;

  constructor(
    private readonly deps: CampaignDeps,
    readonly id: string,
    private readonly host: string,
    private readonly ttlSeconds: number,
  ) {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError(`campaign: ttlSeconds must be a whole number >= 1 (got ${ttlSeconds})`);
    this.ttlMs = ttlSeconds * 1000;
    this.marginMs = this.ttlMs / 5;
  }

  /** First attempt and the watch on the key; rejects (with nothing left running) if etcd cannot be reached. */
  async start(opts?: CallOptions): Promise<void> {
    try {
      await this.tryAcquire(opts);
      this.sub = await follow(
        this.deps.ns,
        this.deps.caller,
        {
          op: 'campaign',
          watch: { key: KEY },
          catchUp: async (grpc) => {
            const res = await this.deps.ns.get(KEY).options(grpc).exec();
            this.observe(res.kvs[0] ?? null);
            return res.header.revision;
          },
          onPut: (kv) => this.observe(kv),
          onDelete: () => this.observe(null),
        },
        opts,
      );
    } catch (err) {
      const held = this.held;
      this.stop();
      if (held) this.revokeQuietly(held.leaseId);
      throw err;
    }
    if (this.state === 'follower') this.scheduleRetry();
  }

  isLeader(): boolean {
    return this.state === 'leader' && this.held !== null && performance.now() < this.held.validUntilMs - this.marginMs;
  }

  onElected(cb: () => void): () => void {
    this.electedCbs.add(cb);
    return () => this.electedCbs.delete(cb);
  }

  onLost(cb: (reason: string) => void): () => void {
    this.lostCbs.add(cb);
    return () => this.lostCbs.delete(cb);
  }

  token(): string | null {
    return this.fence()?.createRevision ?? null;
  }

  /** The fencing token while leading, for transactions that must fail once the lead is gone. */
  fence(): { key: string; createRevision: string; leaseId: string } | null {
    return this.isLeader() && this.held ? { key: KEY, createRevision: this.held.createRevision, leaseId: this.held.leaseId } : null;
  }

  async resign(opts?: CallOptions): Promise<void> {
    if (this.state === 'resigned') return;
    const held = this.held;
    this.stop();
    await this.sub?.close();
    this.sub = null;
    if (!held) return;
    await this.deps.caller.run('resign', opts, (grpc) =>
      this.deps.client.leaseClient.leaseRevoke({ ID: held.leaseId }, grpc).then(
        () => undefined,
        (err: unknown) => {
          if (err instanceof EtcdLeaseInvalidError) return; // expired already: the key is gone
          throw err;
        },
      ),
    );
  }

  async current(opts?: CallOptions): Promise<ObserverLeader | null> {
    const kv = await this.deps.caller.run('currentLeader', opts, (grpc) => this.deps.ns.get(KEY).options(grpc).exec());
    const v = kv.kvs[0];
    return v ? decode(schemas.leader, 'currentLeader', KEY, v.value) : null;
  }

  /** Creates the key if it is absent. Returns whether this campaigner now leads. */
  private async tryAcquire(opts?: CallOptions): Promise<boolean> {
    const { ns, client, caller } = this.deps;
    const existing = await caller.run('campaign', opts, (grpc) => ns.get(KEY).options(grpc).exec());
    if (existing.kvs.length > 0 || this.state !== 'follower') return false;
    const value = encode(schemas.leader, 'campaign', KEY, { id: this.id, host: this.host, since: new Date().toISOString() });
    const sentAt = performance.now();
    const grant = await caller.run('campaign', opts, (grpc) => client.leaseClient.leaseGrant({ TTL: this.ttlSeconds }, grpc));
    const leaseMs = Math.min(Number(grant.TTL), this.ttlSeconds) * 1000;
    let createRevision: string;
    try {
      const txn = await caller.run('campaign', opts, (grpc) =>
        ns.if(KEY, 'Create', '==', 0).then(ns.put(KEY).value(value).lease(grant.ID)).else(ns.get(KEY)).options(grpc).commit(),
      );
      const kv = txn.responses[0]?.response_range?.kvs[0];
      if (txn.succeeded) createRevision = txn.header.revision;
      // A retried commit whose first try went through (its answer was lost): the key is ours.
      else if (kv && kv.lease === grant.ID) createRevision = kv.create_revision;
      else {
        this.revokeQuietly(grant.ID);
        return false;
      }
    } catch (err) {
      this.revokeQuietly(grant.ID);
      throw err;
    }
    if (this.state !== 'follower') {
      this.revokeQuietly(grant.ID); // resigned while the request was in flight
      return false;
    }
    this.held = { leaseId: grant.ID, createRevision, validUntilMs: sentAt + leaseMs };
    this.state = 'leader';
    this.armLossTimer();
    this.scheduleKeepalive(this.ttlMs / 3);
    for (const cb of this.electedCbs) cb();
    return true;
  }

  /** Every view of the key (initial read and watch): a leader whose key is gone or replaced has lost. */
  private observe(kv: IKeyValue | null): void {
    if (this.state === 'leader' && this.held) {
      if (!kv) this.lose('the leader key was deleted');
      else if (kv.create_revision !== this.held.createRevision) this.lose('the leader key was replaced');
    } else if (this.state === 'follower' && !kv) {
      this.kick();
    }
  }

  private scheduleKeepalive(delayMs: number): void {
    this.keepTimer = setTimeout(() => void this.keepalive(), Math.max(0, delayMs));
  }

  private async keepalive(): Promise<void> {
    const held = this.held;
    if (this.state !== 'leader' || !held) return;
    const interval = this.ttlMs / 3;
    const sentAt = performance.now();
    try {
      const res = await this.deps.caller.run('keepalive', { timeoutMs: interval }, (grpc) => keepaliveOnce(this.deps.client, held.leaseId, grpc), 'once');
      if (this.held !== held) return;
      const ttl = Number(res.TTL);
      if (!(ttl > 0)) return this.lose('etcd says the lease has expired');
      held.validUntilMs = sentAt + Math.min(ttl, this.ttlSeconds) * 1000;
      this.armLossTimer();
    } catch {
      // One unanswered keepalive does not mean the lease is gone; the loss timer decides.
    }
    if (this.held === held) this.scheduleKeepalive(interval - (performance.now() - sentAt));
  }

  private armLossTimer(): void {
    clearTimeout(this.lossTimer);
    const held = this.held;
    if (!held) return;
    const due = held.validUntilMs - this.marginMs - performance.now();
    this.lossTimer = setTimeout(
      () => {
        if (this.held === held) this.lose(`no keepalive answered for ${Math.round(this.ttlMs - this.marginMs)} ms: etcd may expire the lease`);
      },
      Math.max(0, due),
    );
  }

  private lose(reason: string): void {
    const held = this.held;
    if (this.state !== 'leader' || !held) return;
    this.state = 'follower';
    this.held = null;
    clearTimeout(this.keepTimer);
    clearTimeout(this.lossTimer);
    // Frees the key at once if etcd is reachable; otherwise it expires with the lease.
    this.revokeQuietly(held.leaseId);
    for (const cb of this.lostCbs) cb(reason);
    this.scheduleRetry();
  }

  private kick(): void {
    if (this.attempting) this.kickPending = true;
    else this.scheduleRetry(0);
  }

  private scheduleRetry(delayMs = this.ttlMs / 2): void {
    if (this.state !== 'follower') return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.retry(), delayMs);
  }

  private async retry(): Promise<void> {
    if (this.state !== 'follower' || this.attempting) return;
    this.attempting = true;
    this.kickPending = false;
    try {
      await this.tryAcquire({ timeoutMs: this.ttlMs / 2 });
    } catch {
      // etcd unreachable: try again at the next tick
    } finally {
      this.attempting = false;
    }
    if (this.state === 'follower') this.scheduleRetry(this.kickPending ? 0 : undefined);
  }

  private revokeQuietly(leaseId: string): void {
    void this.deps.caller
      .run('revoke', { timeoutMs: this.ttlMs }, (grpc) => this.deps.client.leaseClient.leaseRevoke({ ID: leaseId }, grpc))
      .catch(() => undefined);
  }

  /** Stops every timer; no network calls. */
  private stop(): void {
    this.state = 'resigned';
    this.held = null;
    clearTimeout(this.keepTimer);
    clearTimeout(this.lossTimer);
    clearTimeout(this.retryTimer);
  }
}

/** One keepalive round trip on its own stream (the stream ends with the answer or the deadline). */
export async function keepaliveOnce(client: Etcd3, leaseId: string, grpc: { deadline: Date }): Promise<{ TTL: string }> {
  const stream = await client.leaseClient.leaseKeepAlive(grpc);
  return new Promise((resolve, reject) => {
    stream.on('data', (res) => {
      stream.end();
      resolve(res);
    });
    stream.on('error', (err) => reject(castGrpcError(err)));
    stream.write({ ID: leaseId });
  });
}
