/**
 * Read-then-watch without gaps: read the current state, deliver it, then watch from the revision
 * just after the read. etcd3 resumes a broken watch stream by itself from the last revision it
 * saw; when etcd cancels a watch for good (the revision was compacted away while we were
 * disconnected, or permissions changed) the whole read-then-watch starts over, so the consumer
 * always ends up with the current state.
 */
import type { IKeyValue, Namespace, Watcher } from 'etcd3';
import { type CallOptions, type Caller, StoreError, toStoreError } from './call.ts';

/** A running watch; close() stops it (idempotent). */
export interface Subscription {
  close(): Promise<void>;
}

export interface FollowSpec {
  op: string;
  watch: { key: string } | { prefix: string };
  /** Reads the state and delivers it; returns the revision of the read (the response header's). */
  catchUp(grpc: { deadline: Date }): Promise<string>;
  onPut(kv: IKeyValue): void;
  onDelete?(kv: IKeyValue): void;
  /** Called when the watch broke and is being re-established, or a value could not be read. */
  onError?(err: StoreError): void;
}

const RESYNC_DELAY_MS = 1000;
const CANCEL_WAIT_MS = 1000;

/** Starts following; rejects if the first read or watch cannot be set up within the deadline. */
export async function follow(ns: Namespace, caller: Caller, spec: FollowSpec, opts?: CallOptions): Promise<Subscription> {
  let closed = false;
  let watcher: Watcher | null = null;
  let retry: NodeJS.Timeout | undefined;

  const report = (err: unknown) => spec.onError?.(toStoreError(spec.op, caller.endpoints, err));
  const guarded = (f: (kv: IKeyValue) => void) => (kv: IKeyValue) => {
    if (closed) return;
    try {
      f(kv);
    } catch (err) {
      // A bad value must not kill the stream; the consumer hears about it.
      if (err instanceof StoreError) report(err);
      else throw err;
    }
  };

  const start = async (callOpts: CallOptions | undefined): Promise<void> => {
    const revision = await caller.run(spec.op, callOpts, (grpc) => spec.catchUp(grpc));
    if (closed) return;
    const builder = ns.watch();
    if ('key' in spec.watch) builder.key(spec.watch.key);
    else builder.prefix(spec.watch.prefix);
    const w = builder.startRevision((BigInt(revision) + 1n).toString()).watcher();
    w.on('put', guarded(spec.onPut));
    if (spec.onDelete) w.on('delete', guarded(spec.onDelete));
    try {
      // etcd3 keeps reconnecting a watch while etcd is down; give up on it at the deadline.
      await caller.run(spec.op, callOpts, () => new Promise<void>((resolve, reject) => w.once('connected', () => resolve()).once('error', reject)), 'once');
    } catch (err) {
      void w.cancel().catch(() => undefined);
      throw err;
    }
    w.on('error', (err: Error) => {
      report(err);
      void w.cancel().catch(() => undefined);
      if (watcher === w) watcher = null;
      scheduleRestart();
    });
    watcher = w;
    if (closed) void w.cancel().catch(() => undefined);
  };

  const scheduleRestart = () => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      start(undefined).catch((err: unknown) => {
        report(err);
        scheduleRestart();
      });
    }, RESYNC_DELAY_MS);
  };

  await start(opts);
  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      const w = watcher;
      watcher = null;
      // etcd3's cancel waits for etcd to confirm, forever if etcd hangs; nothing is delivered
      // after close() anyway, and closing the store tears the stream down.
      if (w) await Promise.race([w.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, CANCEL_WAIT_MS).unref())]);
    },
  };
}
