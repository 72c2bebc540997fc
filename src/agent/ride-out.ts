/**
 * Riding out an etcd outage on the application tier (issue 14 §3): the rule, as pure functions.
 *
 * When etcd does not answer, the active agent A at epoch E asks every other app machine's agent
 * (POST /ride-out over mutual TLS, src/agent/api.ts) whether it may go on serving. A peer P says
 * yes only if it is not active, runs nothing that only the active machine runs, has seen no epoch
 * above E, and its own record names A at E. By saying yes P promises not to become active (not to
 * start the application, not to answer its role check) for one lease from when it received the
 * request, even if etcd comes back naming P; the promise is stored on disk before the yes is sent,
 * so an agent restart keeps it. A then counts itself active until the earliest over its peers of
 * (its send time + one lease - a margin), and stamps the dead-man switch as far. Any refusal, a
 * timeout or a peer that cannot be reached gives A nothing: its lease runs out and it fences
 * itself, as without the ride-out.
 *
 * Why it is safe (docs/failure-semantics.md, "etcd out of service: the agents' ride-out"): no other
 * machine can serve without etcd naming it at an epoch above E; every machine that could be named
 * is one of the peers A asked; each promised, from a moment after A's send time, not to serve for
 * a lease; and A's window ends a margin before the first of those promises does. A peer that has
 * learned of a newer epoch (the observer has started a failover: its first step is the record)
 * refuses, so A stops by the end of the window its last yes gave.
 */
import type { ActiveRecord } from '../model/ha.ts';
import type { ServiceState } from './services.ts';

/** What a peer knows when it is asked. */
export interface PeerView {
  /** This machine's name. */
  node: string;
  /** It counts itself active (src/agent/agent.ts isActive). */
  active: boolean;
  /** Its services as last seen (fresh when asked). */
  services: ServiceState[];
  /** The application may believe this machine active (a warm service told so and not told otherwise). */
  toldActive: boolean;
  /** The active record it last confirmed in etcd (may be old: etcd may be out for it too). */
  record: ActiveRecord | null;
  /** The highest epoch it has seen in a record or a fence. */
  highestEpoch: number;
}

/** A ride-out request: `node` is active at `epoch` and cannot reach etcd. */
export interface RideOutRequest {
  node: string;
  epoch: number;
}

export type RideOutAnswer = { granted: true } | { granted: false; reason: string };

/**
 * The peer's rule. Yes only when nothing in what this machine knows says another machine than the
 * asker may be active, or that this one is: then, and only then, it may promise to stay a standby.
 */
export function rideOutAnswer(me: PeerView, req: RideOutRequest): RideOutAnswer {
  const no = (reason: string): RideOutAnswer => ({ granted: false, reason });
  if (req.node === me.node) return no('a machine does not ask itself');
  if (me.active) return no(`${me.node} is active itself (epoch ${me.record?.epoch ?? 'none'})`);
  const running = me.services.filter((s) => s.running && ((s.runsOn ?? 'active') === 'active' || me.toldActive)).map((s) => s.name);
  if (running.length) return no(`${me.node} runs what only the active machine runs: ${running.join(', ')}`);
  if (me.highestEpoch > req.epoch) return no(`${me.node} has seen epoch ${me.highestEpoch}, newer than ${req.epoch}`);
  if (me.record === null) return no(`${me.node} has confirmed no active record`);
  if (me.record.node !== req.node || me.record.epoch !== req.epoch)
    return no(`${me.node}'s record names ${me.record.node} at epoch ${me.record.epoch}, not ${req.node} at ${req.epoch}`);
  return { granted: true };
}

/**
 * The part of a lease kept back from a ride-out window: clocks of two machines advance at rates a
 * few parts per million apart, and a timer on a loaded machine may fire late. 10%, at least 100 ms.
 */
export function rideOutMarginMs(leaseMs: number): number {
  return Math.max(100, Math.floor(leaseMs / 10));
}

/** One peer's answer to a request sent at `sentAtMs` (the asker's monotonic clock). */
export interface PeerAnswer {
  peer: string;
  granted: boolean;
  /** Why not: its refusal, or why it gave no answer. */
  reason?: string;
}

/**
 * Until when the asker may serve on its peers' answers to one round of requests sent at
 * `sentAtMs`: `sentAtMs + leaseMs - margin` when every peer in `peers` said yes; null when one
 * refused, did not answer, or was not asked. With no peer at all (a single app machine), null too:
 * nothing stops a machine that etcd could name later from being added, so etcd stays the only proof.
 */
export function rideOutUntil(peers: string[], answers: PeerAnswer[], sentAtMs: number, leaseMs: number): number | null {
  if (peers.length === 0) return null;
  for (const p of peers) if (!answers.some((a) => a.peer === p && a.granted)) return null;
  return sentAtMs + leaseMs - rideOutMarginMs(leaseMs);
}
