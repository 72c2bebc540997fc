/**
 * The event history in etcd: one key per event, `events/<16-digit zero-padded seq>`, so key order
 * is numeric order and a range read or range delete by key is a read or prune by sequence.
 *
 * The sequence comes from a counter key, `events-seq` (outside `events/` so listing the prefix
 * yields only events), bumped in the same transaction that writes the event and prunes the old
 * ones, guarded by the counter's mod revision. Why a counter and not the create revision: etcd's
 * revision counts every write in the cluster (Patroni's leader key is renewed every second), so
 * it would be sparse and could not name the key before the write; a dense sequence makes "keep
 * the newest N" one range delete in the same transaction, and lets a follower that lost its
 * watch ask for exactly the events after the last one it saw.
 */
import { Range, type IKeyValue, type IOperation, type Namespace } from 'etcd3';
import { KEYS, type VigilEvent } from '../model/ha.ts';
import { badData, type CallOptions, type Caller, type StoreError } from './call.ts';
import { follow, type Subscription } from './follow.ts';
import { decode, encode, schemas } from './records.ts';

export const EVENTS_SEQ_KEY = 'events-seq';
const SEQ_DIGITS = 16;

export const eventKey = (seq: number): string => `${KEYS.eventsPrefix}${String(seq).padStart(SEQ_DIGITS, '0')}`;

/** A stored event: `seq` is always set. */
export type StoredEvent = VigilEvent & { seq: number };

/** The etcd side of the event log; src/events/log.ts builds the EventLog on it. */
export interface EventRecords {
  /** Stores the event under the next sequence number and deletes all but the newest `keep`. */
  append(event: VigilEvent, keep: number, opts?: CallOptions): Promise<StoredEvent>;
  /** The newest `limit` events, oldest first. */
  newest(limit: number, opts?: CallOptions): Promise<StoredEvent[]>;
  /**
   * Delivers the newest `backlog` events (default 0), then every new one, in order, each once,
   * without gaps (after a watch that etcd cancelled, the missed events are read back).
   */
  follow(onEvent: (e: StoredEvent) => void, opts?: CallOptions & { backlog?: number; onError?: (err: StoreError) => void }): Promise<Subscription>;
}

const MAX_CONFLICTS = 100;

function seqOf(counter: IKeyValue | undefined): number {
  const last = counter ? Number(counter.value.toString()) : 0;
  if (!Number.isSafeInteger(last) || last < 0) throw badData('appendEvent', EVENTS_SEQ_KEY, 'unexpected value: not a sequence number');
  return last;
}

/** `track` registers each follow subscription with the store, which closes them on close(). */
export function eventRecords(ns: Namespace, caller: Caller, track: (s: Subscription) => Subscription): EventRecords {
  const decodeKv = (op: string, kv: IKeyValue): StoredEvent => {
    const e = decode(schemas.event, op, kv.key.toString(), kv.value);
    if (e.seq === undefined) throw badData(op, kv.key.toString(), 'unexpected value: an event without seq');
    return e as StoredEvent;
  };

  return {
    async append(event, keep, opts) {
      if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`append: keep must be a whole number >= 1 (got ${keep})`);
      let tried: { seq: number; value: string } | null = null;
      return caller.run('appendEvent', opts, async (grpc) => {
        let kv: IKeyValue | undefined = (await ns.get(EVENTS_SEQ_KEY).options(grpc).exec()).kvs[0];
        // A retry after an error: if the earlier try was stored after all, do not store it twice.
        if (tried && seqOf(kv) >= tried.seq) {
          const prev = await ns.get(eventKey(tried.seq)).options(grpc).string();
          if (prev === tried.value) return { ...event, seq: tried.seq };
        }
        for (let i = 0; i < MAX_CONFLICTS; i++) {
          const last = seqOf(kv);
          const seq = last + 1;
          const stored: StoredEvent = { ...event, seq };
          const value = encode(schemas.event, 'appendEvent', eventKey(seq), stored);
          tried = { seq, value };
          const ops: IOperation[] = [ns.put(EVENTS_SEQ_KEY).value(String(seq)), ns.put(eventKey(seq)).value(value)];
          const oldestKept = seq - keep + 1;
          if (oldestKept > 1) ops.push(ns.delete().range(new Range(KEYS.eventsPrefix, eventKey(oldestKept))));
          const txn = await ns
            .if(EVENTS_SEQ_KEY, 'Mod', '==', kv ? kv.mod_revision : 0)
            .then(...ops)
            .else(ns.get(EVENTS_SEQ_KEY))
            .options(grpc)
            .commit();
          if (txn.succeeded) return stored;
          // Another writer took this number: the counter as it is now came back with the answer.
          // A short random pause keeps a crowd of writers from colliding again in lockstep.
          kv = txn.responses[0]?.response_range?.kvs[0];
          await new Promise((r) => setTimeout(r, Math.random() * 10 * Math.min(i + 1, 5)));
        }
        throw badData(
          'appendEvent',
          EVENTS_SEQ_KEY,
          `lost the race for a sequence number ${MAX_CONFLICTS} times`,
          'retry; if it persists, look for a process appending events in a loop',
        );
      });
    },

    async newest(limit, opts) {
      if (!Number.isInteger(limit) || limit < 1) return [];
      const res = await caller.run('listEvents', opts, (grpc) =>
        ns.getAll().prefix(KEYS.eventsPrefix).sort('Key', 'Descend').limit(limit).options(grpc).exec(),
      );
      return res.kvs.map((kv) => decodeKv('listEvents', kv)).reverse();
    },

    async follow(onEvent, opts) {
      let lastSeq: number | null = null;
      const deliver = (e: StoredEvent) => {
        if (lastSeq !== null && e.seq <= lastSeq) return;
        lastSeq = e.seq;
        onEvent(e);
      };
      const sub = await follow(
        ns,
        caller,
        {
          op: 'followEvents',
          watch: { prefix: KEYS.eventsPrefix },
          catchUp: async (grpc) => {
            if (lastSeq === null) {
              // First read: the newest `backlog`, and at least one, to learn where we are.
              const backlog = Math.max(0, opts?.backlog ?? 0);
              const res = await ns.getAll().prefix(KEYS.eventsPrefix).sort('Key', 'Descend').limit(Math.max(1, backlog)).options(grpc).exec();
              const events = res.kvs.map((kv) => decodeKv('followEvents', kv)).reverse();
              lastSeq = events.at(-1)?.seq ?? 0;
              for (const e of events.slice(Math.max(0, events.length - backlog))) onEvent(e);
              return res.header.revision;
            }
            // Resuming after etcd cancelled the watch: everything after the last one delivered.
            const res = await ns
              .getAll()
              .inRange(new Range(eventKey(lastSeq + 1), Range.prefix(KEYS.eventsPrefix).end))
              .sort('Key', 'Ascend')
              .options(grpc)
              .exec();
            for (const kv of res.kvs) deliver(decodeKv('followEvents', kv));
            return res.header.revision;
          },
          onPut: (kv) => deliver(decodeKv('followEvents', kv)),
          ...(opts?.onError ? { onError: opts.onError } : {}),
        },
        opts,
      );
      return track(sub);
    },
  };
}
