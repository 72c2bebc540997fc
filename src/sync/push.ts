/**
 * The active machine's side of file sync: watch the synced directories, and carry every change
 * to each standby with rsync over SSH, one channel per standby. A channel reconciles in full
 * first (and on a schedule), then sends batches of changed paths as they come: the first change
 * of a batch waits `batchDelayMs` for its neighbours, then one rsync per directory carries them
 * all. A batch that fails is kept and retried with a growing pause; one standby's trouble never
 * holds up another. Every push carries the epoch the pusher was made for: a standby refuses it
 * once another machine or a newer epoch is active (see protocol.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { SyncErrorKind, SyncStatus } from '../model/ha.ts';
import { open, readdir } from 'node:fs/promises';
import { PARTIAL_DIR, classifyFailure, incrementalArgs, isSuccess, percentile, reconcileArgs, type PushTarget } from './protocol.ts';
import { TreeWatcher } from './watch.ts';

export interface PeerSpec {
  node: string;
  address: string;
  sshPort: number;
}

export interface PusherOptions {
  epoch: number;
  dirs: string[];
  peers: PeerSpec[];
  /** rsync's remote shell for a standby, e.g. protocol.ts sshCommand(). */
  sshCommand(peer: PeerSpec): string;
  timeoutSeconds: number;
  batchDelayMs: number;
  reconcileIntervalMs: number;
  /** Full reconciliations compare file content (rsync --checksum), not only size and time. */
  checksum: boolean;
  log(event: string, fields?: Record<string, unknown>): void;
  /** A standby's pushes began failing (error) or work again (null). */
  onPeerError?(node: string, error: { kind: SyncErrorKind; message: string } | null): void;
  /** The directory on the standby (default: the same path). Tests on one machine push into another. */
  remoteDir?(dir: string): string;
  /** The rsync binary (default rsync from PATH). */
  rsync?: string;
  /**
   * Directories held as one set (the air-gap patch directory): never pushed path by path (any
   * change asks for a reconciliation), read through a handle on the directory as it was when the
   * push started, and exchanged in one step on the standby (protocol.ts reconcileArgs `whole`,
   * receive.ts), so a standby holds the old set or the new one even when the push is cut off by
   * the active machine's death.
   */
  wholeDirs?: string[];
  now?: () => number;
}

type PeerStatus = SyncStatus['peers'][number];
const LAG_SAMPLES = 2000;
const MAX_BACKOFF_MS = 5000;
/** How long rsync's stderr is still read after rsync exited (see Channel.rsync). */
const STDERR_LINGER_MS = 500;
/** A whole directory is read by rsync through its descriptor 3, the directory as opened before the push. */
const PINNED_SOURCE = '/proc/self/fd/3';
/** rsync's own status for "killed by a signal" (RERR_SIGNAL). */
const RSYNC_SIGNALLED = 20;

export class Pusher {
  private readonly watchers: TreeWatcher[] = [];
  private readonly channels: Channel[];
  private readonly lags: number[] = [];
  private stopped = false;

  constructor(private readonly o: PusherOptions) {
    this.channels = o.peers.map((p) => new Channel(p, o, (ms) => this.sample(ms)));
  }

  async start(): Promise<void> {
    for (const [i, root] of this.o.dirs.entries()) {
      const w = new TreeWatcher({
        root,
        onChange: (rel) => this.changed(i, rel),
        onDegraded: (reason) => this.o.log('sync-watch-degraded', { dir: root, reason }),
        // A replaced root (an air-gap import): a full reconciliation carries the new set and removes what it no longer holds.
        onReplaced: () => {
          this.o.log('sync-root-replaced', { dir: root });
          this.reconcileNow();
        },
      });
      this.watchers.push(w);
    }
    // Watches first, then the reconciliation: whatever changes in between is seen by one or the other.
    await Promise.all(this.watchers.map((w) => w.start()));
    if (this.stopped) return;
    for (const c of this.channels) c.start();
  }

  /** Stops watching and pushing now; a push under way is killed. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.watchers) w.close();
    await Promise.all(this.channels.map((c) => c.stop()));
  }

  status(): Pick<SyncStatus, 'watch' | 'peers' | 'recentLagMs'> {
    const degraded = this.watchers.find((w) => w.degraded)?.degraded ?? null;
    return {
      watch: { dirs: this.watchers.reduce((n, w) => n + w.size, 0), degraded },
      peers: this.channels.map((c) => c.status()),
      recentLagMs: this.lags.length ? { p50: percentile(this.lags, 50), p99: percentile(this.lags, 99), samples: this.lags.length } : null,
    };
  }

  /** Asks every standby's channel for a full reconciliation now (e.g. after a watch was lost). */
  reconcileNow(): void {
    for (const c of this.channels) c.requestReconcile();
  }

  private changed(dir: number, rel: string): void {
    // A directory held as one set is never carried path by path: a batch would land the new set
    // on the standby file by file (a mix if the push is cut), so any change there asks for a
    // whole reconciliation instead, which lands the set in one step (receive.ts).
    if (this.o.wholeDirs?.includes(this.o.dirs[dir]!)) {
      this.reconcileNow();
      return;
    }
    for (const c of this.channels) c.mark(dir, rel);
  }

  private sample(ms: number): void {
    this.lags.push(ms);
    if (this.lags.length > LAG_SAMPLES) this.lags.splice(0, this.lags.length - LAG_SAMPLES);
  }
}

interface Pending {
  first: number;
  last: number;
}

class Channel {
  /** Changed paths not yet carried, per directory index, with when they were first and last seen. */
  private pending = new Map<number, Map<string, Pending>>();
  /** The batch being pushed: still backlog until it succeeds. */
  private inflight: Map<number, Map<string, Pending>> | null = null;
  private reconcileWanted = true;
  private running = false;
  private stopped = false;
  private wake: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private child: ChildProcess | null = null;
  private backoffMs = 0;
  private holding = false;
  private reconciling = false;
  private lastSyncAt: string | null = null;
  private lastReconcileAt: string | null = null;
  private error: PeerStatus['error'] = null;
  private loop: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(
    private readonly peer: PeerSpec,
    private readonly o: PusherOptions,
    private readonly sample: (ms: number) => void,
  ) {
    this.now = o.now ?? (() => performance.now());
  }

  start(): void {
    this.loop = this.run();
    this.timer = setInterval(() => this.requestReconcile(), this.o.reconcileIntervalMs);
    this.timer.unref();
  }

  /**
   * Kills the push under way and waits for the loop to end: for rsync to exit, not for its
   * output pipes to close (see rsync()), so a standby that hangs cannot hold this up.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 1000);
      await exited;
      clearTimeout(killer);
    }
    this.kick(true);
    await this.loop;
  }

  mark(dir: number, rel: string): void {
    const t = this.now();
    let m = this.pending.get(dir);
    if (!m) this.pending.set(dir, (m = new Map()));
    const p = m.get(rel);
    if (p) p.last = t;
    else m.set(rel, { first: t, last: t });
    this.kick();
  }

  requestReconcile(): void {
    this.reconcileWanted = true;
    this.kick();
  }

  status(): PeerStatus {
    let backlog = 0;
    let oldest = Infinity;
    for (const m of [...this.pending.values(), ...(this.inflight?.values() ?? [])]) {
      backlog += m.size;
      for (const p of m.values()) oldest = Math.min(oldest, p.first);
    }
    return {
      node: this.peer.node,
      backlog,
      lagMs: backlog ? Math.round(this.now() - oldest) : 0,
      reconciling: this.reconciling,
      lastSyncAt: this.lastSyncAt,
      lastReconcileAt: this.lastReconcileAt,
      error: this.error,
    };
  }

  /** Wakes the loop when it waits for changes (not while it holds: see hold()). */
  private kick(force = false): void {
    if (!force && this.holding) return;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits `ms` whatever changes come meanwhile; only stop() ends it early. */
  private async hold(ms: number): Promise<void> {
    this.holding = true;
    await this.idle(ms);
    this.holding = false;
  }

  private idle(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const t =
        ms === undefined
          ? null
          : setTimeout(() => {
              this.wake = null;
              resolve();
            }, ms);
      this.wake = () => {
        if (t) clearTimeout(t);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const hasChanges = [...this.pending.values()].some((m) => m.size > 0);
      if (!this.reconcileWanted && !hasChanges) {
        await this.idle();
        continue;
      }
      if (this.backoffMs) await this.hold(this.backoffMs);
      if (this.stopped) break;
      const ok = this.reconcileWanted ? await this.reconcile() : await this.batch();
      this.backoffMs = ok ? 0 : Math.min(MAX_BACKOFF_MS, Math.max(250, this.backoffMs * 2));
    }
  }

  /** One rsync per directory with --delete: afterwards the standby holds what this machine held when it started. */
  private async reconcile(): Promise<boolean> {
    this.reconcileWanted = false;
    this.reconciling = true;
    const started = this.now();
    try {
      for (const dir of this.o.dirs) {
        const empty = (await readdir(dir).catch(() => [])).filter((n) => n !== PARTIAL_DIR).length === 0;
        const whole = this.o.wholeDirs?.includes(dir) ?? false;
        let r: { code: number; stderr: string };
        if (whole) {
          // rsync opens every directory by its full path again as it goes, so a root replaced
          // meanwhile (an import) would be read half old, half new. Read through a handle on the
          // directory as it was when the push started instead (/proc/self/fd/3 in rsync): one set.
          const fh = await open(dir, 'r').catch(() => null);
          try {
            r = fh
              ? await this.rsync(reconcileArgs(dir, this.target(), this.o.checksum, this.o.remoteDir?.(dir), empty, true, PINNED_SOURCE), undefined, fh.fd)
              : { code: 23, stderr: `${dir} cannot be opened` };
          } finally {
            await fh?.close();
          }
          // Exit 24 (files vanished while read): the set was removed under the push; not a complete set.
          if (r.code === 24) r = { code: 23, stderr: `${r.stderr}\n${dir}: files vanished during the push: not a complete set, pushed again` };
        } else r = await this.rsync(reconcileArgs(dir, this.target(), this.o.checksum, this.o.remoteDir?.(dir), empty, false));
        if (!this.settle(r, dir)) {
          this.reconcileWanted = true;
          return false;
        }
      }
      // Changes seen before the reconciliation started are carried by it.
      const end = this.now();
      for (const m of this.pending.values())
        for (const [rel, p] of m)
          if (p.last <= started) {
            this.sample(end - p.first);
            m.delete(rel);
          }
      this.lastReconcileAt = new Date().toISOString();
      this.o.log('sync-reconciled', { peer: this.peer.node, ms: Math.round(end - started), checksum: this.o.checksum });
      return true;
    } finally {
      this.reconciling = false;
    }
  }

  /** Carries the changed paths gathered so far; what changes meanwhile waits for the next batch. */
  private async batch(): Promise<boolean> {
    await this.hold(this.o.batchDelayMs); // let the neighbours of the first change join it
    if (this.stopped) return true;
    const taken = this.pending;
    this.pending = new Map();
    this.inflight = taken;
    for (const [dir, m] of taken) {
      if (!m.size) continue;
      const list = Buffer.from([...m.keys()].map((rel) => `${rel || '.'}\0`).join(''));
      const r = await this.rsync(incrementalArgs(this.o.dirs[dir]!, this.target(), this.o.remoteDir?.(this.o.dirs[dir]!)), list);
      if (!this.settle(r, this.o.dirs[dir]!)) {
        this.inflight = null;
        this.restore(taken);
        return false;
      }
      const end = this.now();
      for (const p of m.values()) this.sample(end - p.first);
      taken.delete(dir);
    }
    this.inflight = null;
    return true;
  }

  /** Puts a failed batch back, keeping the earliest time each path was first seen. */
  private restore(taken: Map<number, Map<string, Pending>>): void {
    for (const [dir, m] of taken) {
      let cur = this.pending.get(dir);
      if (!cur) this.pending.set(dir, (cur = new Map()));
      for (const [rel, p] of m) {
        const c = cur.get(rel);
        cur.set(rel, c ? { first: Math.min(c.first, p.first), last: Math.max(c.last, p.last) } : p);
      }
    }
  }

  private settle(r: { code: number; stderr: string }, dir: string): boolean {
    if (this.stopped) return false;
    if (isSuccess(r.code)) {
      this.lastSyncAt = new Date().toISOString();
      if (this.error) {
        this.o.log('sync-recovered', { peer: this.peer.node, after: this.error.kind });
        this.error = null;
        this.o.onPeerError?.(this.peer.node, null);
      }
      return true;
    }
    const e = classifyFailure(r.code, r.stderr, this.peer.node, dir);
    if (this.error?.kind !== e.kind || this.error.message !== e.message) {
      this.o.log('sync-failed', { peer: this.peer.node, kind: e.kind, message: e.message, code: r.code });
      const first = this.error?.kind !== e.kind;
      this.error = { ...e, since: this.error?.kind === e.kind ? this.error.since : new Date().toISOString() };
      if (first) this.o.onPeerError?.(this.peer.node, e);
    }
    return false;
  }

  private target(): PushTarget {
    return {
      address: this.peer.address,
      sshPort: this.peer.sshPort,
      epoch: this.o.epoch,
      sshCommand: this.o.sshCommand(this.peer),
      timeoutSeconds: this.o.timeoutSeconds,
    };
  }

  /**
   * Runs rsync; resolves once it has exited and its stderr is read. rsync's ssh hands its stdio
   * to the shared ControlMaster (ControlPersist), which holds them until the remote end of the
   * session closes, long after rsync and ssh exited when the standby hangs (a paused receiver, a
   * stuck disk). So stderr is read on only briefly after the exit, then let go: waiting for the
   * pipe to close could hold the channel (and stop(), and the agent's shutdown) indefinitely.
   */
  private rsync(args: string[], input?: Buffer, fd3?: number): Promise<{ code: number; stderr: string }> {
    // Stopped meanwhile (stop() found no child to kill): start nothing new.
    if (this.stopped) return Promise.resolve({ code: RSYNC_SIGNALLED, stderr: 'the pusher stopped' });
    return new Promise((resolve) => {
      const child = spawn(this.o.rsync ?? 'rsync', args, { stdio: [input ? 'pipe' : 'ignore', 'ignore', 'pipe', ...(fd3 === undefined ? [] : [fd3])] });
      this.child = child;
      let linger: NodeJS.Timeout | undefined;
      child.on('exit', () => {
        linger = setTimeout(() => {
          child.stdin?.destroy();
          child.stderr?.destroy(); // once its streams are closed the child emits 'close'
        }, STDERR_LINGER_MS);
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        if (stderr.length < 65536) stderr += d.toString();
      });
      if (input) {
        child.stdin!.on('error', () => {}); // rsync may exit before reading it all; its status says why
        child.stdin!.end(input);
      }
      child.on('error', (err) => resolve({ code: 127, stderr: `cannot run rsync: ${err.message}` }));
      child.on('close', (code, signal) => {
        clearTimeout(linger);
        if (this.child === child) this.child = null;
        resolve({ code: code ?? 128, stderr: signal ? `${stderr}rsync stopped by ${signal}` : stderr });
      });
    });
  }
}
