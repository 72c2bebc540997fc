/**
 * File sync inside the agent of an app machine. After every cycle of the agent it:
 * - writes the accept file, the agent's word to this machine's receivers on who may push here;
 * - runs a pusher while this machine is active (one per epoch: a new epoch gets a new pusher,
 *   which reconciles in full first), and stops it the moment the machine is no longer active;
 * - before the machine starts serving, stops every receiver still running here, so no push from
 *   an older epoch writes under the application;
 * - looks at the quarantine and reports new entries (an event, the status).
 */
import { readFile, readdir, rename, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Cluster } from '../config/schema.ts';
import type { ActiveRecord, SyncErrorKind, SyncStatus } from '../model/ha.ts';
import type { NewEvent } from '../events/log.ts';
import { sleep } from '../util/exec.ts';
import { SYNC_PATHS, sshCommand, wholeStaging, type AcceptState } from './protocol.ts';
import { Pusher, type PeerSpec } from './push.ts';

export interface FileSyncOptions {
  node: string;
  cluster: Cluster;
  log(event: string, fields?: Record<string, unknown>): void;
  event(e: NewEvent): Promise<unknown>;
  paths?: Partial<typeof SYNC_PATHS>;
}

export interface AgentView {
  record: ActiveRecord | null;
  /** Wall-clock ms of the last confirmation's read; null before the first. */
  /** When the agent's last confirmation was sent, on the boot clock (ms; src/util/boot-clock.ts). */
  confirmedAtBootMs: number | null;
  /** Active at the record's epoch, confirmed within the lease. */
  active: boolean;
}

const QUARANTINE_SCAN_MS = 5000;

export class FileSync {
  private readonly paths: typeof SYNC_PATHS;
  private pusher: Pusher | null = null;
  private pusherEpoch: number | null = null;
  private quarantine: SyncStatus['quarantine'];
  private reported = new Set<string>();
  private lastScan = -Infinity;
  private closed = false;
  private writes = 0;
  private readonly peers: PeerSpec[];

  constructor(private readonly o: FileSyncOptions) {
    this.paths = { ...SYNC_PATHS, ...o.paths };
    this.quarantine = { path: this.paths.quarantine, files: 0, bytes: 0, sessions: [] };
    this.peers = o.cluster.machines
      .filter((m) => m.roles.includes('app') && m.name !== o.node)
      .map((m) => ({ node: m.name, address: m.address, sshPort: o.cluster.fileSync.sshPort }));
  }

  get dirs(): string[] {
    return this.o.cluster.application.syncDirs;
  }

  async start(): Promise<void> {
    await mkdir(this.paths.controlDir, { recursive: true, mode: 0o700 });
    const saved = await readFile(this.reportedFile(), 'utf8').catch(() => '[]');
    this.reported = new Set(JSON.parse(saved) as string[]);
  }

  /** Called after every agent cycle. */
  async update(view: AgentView): Promise<void> {
    if (this.closed) return;
    await this.writeAccept(view);
    const epoch = view.record?.epoch ?? null;
    if (view.active && epoch !== null && this.pusherEpoch !== epoch) await this.startPushing(epoch);
    else if (!view.active && this.pusher) await this.stopPushing('this machine is no longer the active one');
    if (performance.now() - this.lastScan >= QUARANTINE_SCAN_MS) {
      this.lastScan = performance.now();
      await this.scanQuarantine();
    }
  }

  /**
   * Before this machine serves: stop every receiver still running here (a push accepted under
   * the previous record). Each receiver registered itself by pid; it is signalled only if that pid
   * still runs the receiver.
   */
  async beforeActivate(): Promise<void> {
    const pids = (await readdir(this.paths.receiversDir).catch(() => [])).map(Number).filter((p) => Number.isInteger(p) && p > 0);
    const live = [];
    for (const pid of pids) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (!cmd.includes('--peer')) continue; // gone, or the pid was reused by something else
      try {
        process.kill(pid, 'SIGTERM');
        live.push(pid);
      } catch {
        // exited meanwhile
      }
    }
    if (live.length) {
      this.o.log('sync-receivers-stopped', { pids: live });
      for (let i = 0; i < 20 && live.some(alive); i++) await sleep(50);
    }
    // A whole-set push cut off here left its staging copy beside the patch directory: never used
    // while this machine is active (a push to it starts again from its own set), so freed now.
    const patchDir = this.o.cluster.application.patchDir;
    if (patchDir && !live.some(alive)) await rm(wholeStaging(patchDir), { recursive: true, force: true }).catch(() => undefined);
  }

  status(view: AgentView): SyncStatus {
    const p = this.pusher?.status();
    return {
      role: this.pusher && view.active ? 'pushing' : 'receiving',
      dirs: this.dirs,
      watch: p?.watch ?? null,
      peers: p?.peers ?? [],
      recentLagMs: p?.recentLagMs ?? null,
      quarantine: this.quarantine,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stopPushing('the agent is stopping');
  }

  private async startPushing(epoch: number): Promise<void> {
    await this.stopPushing(`epoch ${epoch} begins`);
    const c = this.o.cluster;
    const ssh = (peer: PeerSpec) =>
      sshCommand({ key: this.paths.key, knownHosts: this.paths.knownHosts, controlDir: this.paths.controlDir, port: peer.sshPort, connectTimeoutSeconds: 3 });
    const pusher = new Pusher({
      epoch,
      dirs: this.dirs,
      peers: this.peers,
      sshCommand: ssh,
      timeoutSeconds: c.fileSync.timeoutSeconds,
      batchDelayMs: c.fileSync.batchDelayMs,
      reconcileIntervalMs: c.fileSync.reconcileIntervalSeconds * 1000,
      checksum: c.fileSync.checksum,
      wholeDirs: c.application.patchDir ? [c.application.patchDir] : [],
      log: this.o.log,
      onPeerError: (peer, error) => void this.peerError(peer, epoch, error),
    });
    this.pusher = pusher;
    this.pusherEpoch = epoch;
    this.o.log('sync-pushing', { epoch, to: this.peers.map((p) => p.node), dirs: this.dirs });
    // The initial walk of large trees takes a while: the agent's cycle does not wait for it.
    void pusher.start().catch((err: unknown) => this.o.log('sync-start-failed', { error: String(err) }));
  }

  private async stopPushing(why: string): Promise<void> {
    const p = this.pusher;
    if (!p) return;
    this.pusher = null;
    this.pusherEpoch = null;
    this.o.log('sync-stopped', { why });
    await p.stop();
  }

  private async peerError(peer: string, epoch: number, error: { kind: SyncErrorKind; message: string } | null): Promise<void> {
    const e: NewEvent = error
      ? { type: 'sync-failed', node: this.o.node, epoch, message: error.message, details: { peer, kind: error.kind } }
      : { type: 'sync-recovered', node: this.o.node, epoch, message: `file sync from ${this.o.node} to ${peer} works again`, details: { peer } };
    await this.o.event(e).catch((err: unknown) => this.o.log('event-failed', { error: String(err) }));
  }

  private async writeAccept(view: AgentView): Promise<void> {
    const s: AcceptState = {
      node: this.o.node,
      active: view.record ? { node: view.record.node, epoch: view.record.epoch } : null,
      confirmedAtBootMs: view.confirmedAtBootMs,
      leaseMs: this.o.cluster.timers.agentLeaseMs,
      dirs: this.dirs,
    };
    const file = this.paths.acceptFile;
    const tmp = `${file}.${process.pid}.${++this.writes}.tmp`; // updates may overlap (a cycle and an activation)
    await mkdir(dirname(file), { recursive: true });
    await writeFile(tmp, JSON.stringify(s));
    await rename(tmp, file);
  }

  private reportedFile(): string {
    return join(dirname(this.paths.quarantine), 'quarantine-reported.json');
  }

  /** Counts what the quarantine holds; each new entry (one per push that displaced files) is reported once. */
  private async scanQuarantine(): Promise<void> {
    const root = this.paths.quarantine;
    const sessions = (await readdir(root).catch(() => [])).sort();
    let files = 0;
    let bytes = 0;
    const fresh: { session: string; files: number }[] = [];
    for (const s of sessions) {
      const n = await countFiles(join(root, s));
      files += n.files;
      bytes += n.bytes;
      if (!this.reported.has(s) && n.files > 0) fresh.push({ session: s, files: n.files });
    }
    this.quarantine = { path: root, files, bytes, sessions };
    for (const f of fresh) {
      const dir = join(root, f.session);
      this.o.log('files-quarantined', { dir, files: f.files });
      await this.o
        .event({
          type: 'files-quarantined',
          node: this.o.node,
          message: `${f.files} file(s) on ${this.o.node} that never reached the active machine were moved aside to ${dir}; nothing was deleted (docs/file-sync.md says how to restore them)`,
          details: { dir, files: f.files },
        })
        .then(() => this.reported.add(f.session))
        .catch((err: unknown) => this.o.log('event-failed', { error: String(err) }));
    }
    if (fresh.length) await writeFile(this.reportedFile(), JSON.stringify([...this.reported])).catch(() => {});
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function countFiles(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        files++;
        bytes += (await stat(p).catch(() => ({ size: 0 }))).size;
      }
    }
  };
  await walk(dir);
  return { files, bytes };
}
