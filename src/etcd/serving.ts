/**
 * An app machine's claim to run the application: the key `holders/<node>`, attached to a lease
 * its agent keeps alive once per cycle. The claim is what a newly activated machine waits on
 * before it starts (src/agent/agent.ts, "Handover"): the old machine drops its claim once its
 * services have stopped, and if it cannot (dead, paused, cut off from etcd) etcd deletes the key
 * when the lease expires.
 *
 * Timing: etcd expires a lease TTL seconds after it *received* the last keepalive. The agent
 * counts its own right to serve from when it *sent* that keepalive, for `agentLeaseMs`, and the
 * TTL is `agentLeaseMs` rounded up to whole seconds. So the key outlives the old agent's belief
 * that it may serve, and a new machine that sees the key gone knows the old one has stopped
 * believing it (clocks advance at about the same rate; only durations are compared).
 */
import { EtcdLeaseInvalidError, type Etcd3, type Namespace } from 'etcd3';
import { KEYS, type ServingClaim } from '../model/ha.ts';
import type { Caller } from './call.ts';
import { keepaliveOnce } from './leadership.ts';
import { decode, encode, schemas } from './records.ts';

export interface ServingHold {
  /** The epoch this machine's claim stands for under the current lease; null when there is none. */
  readonly claimed: number | null;
  /**
   * Keeps the lease alive, or takes a new one when etcd let it expire (the claim went with it).
   * Resolves once etcd answered that the lease lives; throws StoreError when etcd does not answer.
   */
  renew(timeoutMs: number): Promise<void>;
  /** Puts the claim for `epoch` under the lease (nothing to do when it is there already). */
  claim(epoch: number, timeoutMs: number): Promise<void>;
  /** Deletes this machine's claim (nothing to do without one). Only once its services have stopped. */
  release(timeoutMs: number): Promise<void>;
  /**
   * A planned restart of the agent: puts the claim under a new lease of `ttlSeconds` that nobody
   * keeps alive, so it outlives this process by that long (and no longer). Throws when there is
   * no claim or etcd does not answer; the claim then stays under its old lease.
   */
  extend(ttlSeconds: number, timeoutMs: number): Promise<void>;
}

export function claimKey(node: string): string {
  return `${KEYS.holdersPrefix}${node}`;
}

export class Hold implements ServingHold {
  private leaseId: string | null = null;
  claimed: number | null = null;
  /** A claim may be in etcd from an earlier lease or process: release deletes it all the same. */
  private mayHoldKey = true;

  constructor(
    private readonly deps: { client: Etcd3; ns: Namespace; caller: Caller; prefix: string },
    private readonly node: string,
    private readonly ttlSeconds: number,
  ) {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError(`servingHold: ttlSeconds must be a whole number ≥ 1, not ${ttlSeconds}`);
  }

  async renew(timeoutMs: number): Promise<void> {
    const { caller, client } = this.deps;
    const id = this.leaseId;
    if (id !== null) {
      try {
        // A keepalive may be sent twice: it only renews. The renewal counts from before the first.
        const res = await caller.run('renewClaim', { timeoutMs }, (grpc) => keepaliveOnce(client, id, grpc));
        if (Number(res.TTL) > 0) return;
      } catch (err) {
        if (!(err instanceof EtcdLeaseInvalidError || (err as { cause?: unknown }).cause instanceof EtcdLeaseInvalidError)) throw err;
      }
      // etcd expired the lease, and with it the claim: start again with a new one.
      if (this.leaseId === id) Object.assign(this, { leaseId: null, claimed: null });
    }
    const grant = await caller.run('renewClaim', { timeoutMs }, (grpc) => client.leaseClient.leaseGrant({ TTL: this.ttlSeconds }, grpc), 'once');
    this.leaseId = grant.ID;
  }

  async claim(epoch: number, timeoutMs: number): Promise<void> {
    if (this.claimed === epoch) return;
    const lease = this.leaseId;
    if (lease === null) throw new Error('servingHold.claim: no lease yet (renew first)');
    const key = claimKey(this.node);
    const value = encode(schemas.claim, 'claim', `${this.deps.prefix}${key}`, { node: this.node, epoch, since: new Date().toISOString() });
    await this.deps.caller.run('claim', { timeoutMs }, (grpc) => this.deps.ns.put(key).value(value).lease(lease).options(grpc).exec());
    this.mayHoldKey = true;
    if (this.leaseId === lease) this.claimed = epoch;
  }

  async extend(ttlSeconds: number, timeoutMs: number): Promise<void> {
    const epoch = this.claimed;
    if (epoch === null) throw new Error('servingHold.extend: no claim to extend');
    const { caller, client } = this.deps;
    const grant = await caller.run('extendClaim', { timeoutMs }, (grpc) => client.leaseClient.leaseGrant({ TTL: ttlSeconds }, grpc), 'once');
    // The old lease is left to run out; the key now lives by the new one.
    Object.assign(this, { leaseId: grant.ID, claimed: null });
    await this.claim(epoch, timeoutMs);
  }

  async release(timeoutMs: number): Promise<void> {
    if (!this.mayHoldKey && this.claimed === null) return;
    await this.deps.caller.run('releaseClaim', { timeoutMs }, (grpc) => this.deps.ns.delete().key(claimKey(this.node)).options(grpc).exec());
    Object.assign(this, { claimed: null, mayHoldKey: false });
  }
}

/** Every claim in etcd, from one range read (already inside the caller's deadline). */
export async function readClaims(ns: Namespace, prefix: string, grpc: { deadline: Date }): Promise<ServingClaim[]> {
  const res = await ns.getAll().prefix(KEYS.holdersPrefix).options(grpc).exec();
  return res.kvs.map((kv) => decode(schemas.claim, 'confirmActive', `${prefix}${kv.key.toString()}`, kv.value));
}
