/**
 * Carrying out one tick's actions, in decide's order, and only while this observer still has the
 * right to: leadership is checked again before every action (a fence can take a second or more,
 * so a list can outlast the leader's margin), and MAINT, READY, UP and fences are sent only while
 * the active record is still at the epoch they were decided for (read again from etcd, unless
 * this tick's own compare-and-swap just wrote it). So an observer that was paused or slow in the
 * middle of its list cannot fence the machine another observer activated meanwhile.
 * The effects are passed in: daemon.ts wires them to etcd, HAProxy, the agents and Patroni.
 */
import type { Action } from './decide.ts';

type Log = (event: string, fields?: Record<string, unknown>) => void;

export interface Effects {
  /** This observer holds the leadership now (monotonic lease, with its safety margin). */
  stillLeads(): boolean;
  /** The active record's epoch as etcd has it now (null: no record); throws when etcd does not answer. */
  currentEpoch(): Promise<number | null>;
  /** The compare-and-swap of an activation; false when the record changed first. */
  activate(a: Extract<Action, { kind: 'activate' }>): Promise<boolean>;
  /** Stops the machine's services through its agent and puts it in MAINT. Never throws. */
  fence(node: string, epoch: number): Promise<void>;
  /** Puts the active machine's server back to READY at `epoch`. Never throws. */
  unfence(node: string, epoch: number): Promise<void>;
  /** Sets the active machine's server UP at `epoch` where HAProxy has it ready but down. Never throws. */
  markUp(node: string, epoch: number): Promise<void>;
  /** Starts Patroni's switchover without waiting for it. */
  dbSwitchover(from: string, to: string): void;
  /** Stores the event and alerts it. Never throws. */
  event(e: Extract<Action, { kind: 'event' }>['event']): Promise<void>;
  answer(a: Extract<Action, { kind: 'complete-request' }>): Promise<void>;
  log: Log;
}

/** `seenEpoch`: the record's epoch in the observation this tick's decision came from. */
export async function execute(fx: Effects, seenEpoch: number | null, actions: Action[]): Promise<void> {
  /** The epoch the record is known to be at, for fencing; undefined until read or written. */
  let known: number | null | undefined;
  let fencing = true;
  for (const [i, a] of actions.entries()) {
    if (!fx.stillLeads()) {
      fx.log('actions-dropped', { reason: 'this observer no longer leads', dropped: actions.slice(i).map((x) => x.kind) });
      return;
    }
    const fencingKind = a.kind === 'fence' || a.kind === 'unfence' || a.kind === 'mark-up';
    if (fencingKind && !fencing) continue;
    fx.log('action', { ...a });
    switch (a.kind) {
      case 'activate':
        if (seenEpoch !== a.expectEpoch) return;
        if (!(await fx.activate(a))) {
          fx.log('activate-lost-race', { node: a.node, epoch: a.epoch });
          return; // someone wrote first: decide again on the next tick
        }
        known = a.epoch;
        break;
      case 'fence':
      case 'unfence':
      case 'mark-up': {
        if (known === undefined) known = await fx.currentEpoch().catch(() => undefined);
        if (known === undefined || known !== a.epoch) {
          // The rest of the fencing too; events and answers are facts seen this tick and still go.
          fencing = false;
          const dropped = actions.slice(i).filter((x) => x.kind === 'fence' || x.kind === 'unfence' || x.kind === 'mark-up');
          fx.log('fencing-dropped', {
            reason: known === undefined ? 'etcd did not answer the re-read of the active record' : `the active record moved to epoch ${known}`,
            decidedAt: a.epoch,
            dropped: dropped.map((x) => `${x.kind} ${x.node}`),
          });
          break;
        }
        if (a.kind === 'fence') await fx.fence(a.node, a.epoch);
        else if (a.kind === 'unfence') await fx.unfence(a.node, a.epoch);
        else await fx.markUp(a.node, a.epoch);
        break;
      }
      case 'db-switchover':
        fx.dbSwitchover(a.from, a.to);
        break;
      case 'event':
        await fx.event(a.event);
        break;
      case 'complete-request':
        await fx.answer(a);
        break;
    }
  }
}
