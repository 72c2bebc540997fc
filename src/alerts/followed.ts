/**
 * Alerts for events that a process without an alerter records: the admin's `vigil airgap import`
 * (an import, a refusal) and the agents (file sync's quarantine and failures, a fenced stale
 * primary). Only the observers hold the cluster's alert channels and secrets, so every observer
 * follows etcd's event log and the leading one alerts these as they are stored. The observer's
 * own events are alerted when it stores them and are not in this set, so none goes out twice.
 *
 * ```ts
 * await events.watch((e) => { if (alertOnFollow(e, leadership.isLeader())) void alerter.alert(e); });
 * ```
 */
import type { EventType, VigilEvent } from '../model/ha.ts';

/** Event types no observer records: they reach the alerter only through the followed log. */
export const RECORDED_ELSEWHERE: ReadonlySet<EventType> = new Set<EventType>([
  'airgap-import',
  'airgap-refused',
  'files-quarantined',
  'sync-failed',
  'sync-recovered',
  'primary-fenced',
]);

/** Whether the observer that saw `e` in the log alerts it: only the leader, only events recorded elsewhere. */
export const alertOnFollow = (e: VigilEvent, leading: boolean): boolean => leading && RECORDED_ELSEWHERE.has(e.type);
