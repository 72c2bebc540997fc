/**
 * Change hints for one synced directory: one inotify watch per directory (node's fs.watch, not
 * recursive), each event naming a path relative to the root. Events are hints only: the pusher
 * sends whatever the path holds when it runs, and the periodic full reconciliation catches what
 * a watch missed (a full inotify queue, the watch limit, a restart). When a watch cannot be added
 * the watcher says so (`degraded`) and keeps the others.
 *
 * The root itself can be replaced by a rename (an air-gap import swaps the patch directory for
 * its verified copy, src/airgap/import.ts): its watches would then follow the old directory
 * under its new name. So the root's parent is watched too, for the root's own name only; when the
 * name points to another directory, every watch is made again on it and `onReplaced` is called.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { PARTIAL_DIR } from './protocol.ts';

export interface TreeWatcherOptions {
  root: string;
  /** A path (relative to root; '' for the root itself) changed, was created, deleted or renamed. */
  onChange(rel: string): void;
  /** Watching became incomplete: changes under some directories are found only by reconciliation. */
  onDegraded(reason: string): void;
  /** The root was replaced by another directory under its name: the whole of it must be carried again. */
  onReplaced?(): void;
}

export class TreeWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private closed = false;
  private parent: FSWatcher | null = null;
  /** The inode the watches are on; null while the root does not exist. */
  private rootIno: number | null = null;
  private rewatching: Promise<void> = Promise.resolve();
  degraded: string | null = null;

  constructor(private readonly o: TreeWatcherOptions) {}

  get size(): number {
    return this.watchers.size;
  }

  /** Watches the root and every directory below it. Resolves once the initial walk is done. */
  async start(): Promise<void> {
    try {
      const name = basename(this.o.root);
      this.parent = watch(dirname(this.o.root), { persistent: false }, (_type, n) => {
        if (n !== null && n.toString() === name) this.rootRenamed();
      });
      this.parent.on('error', () => undefined);
    } catch {
      this.parent = null; // no parent watch: a replaced root is found by the periodic reconciliation
    }
    this.rootIno = (await stat(this.o.root).catch(() => null))?.ino ?? null;
    await this.addTree('');
  }

  close(): void {
    this.closed = true;
    this.parent?.close();
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  /** The root's name changed in its parent: when another directory stands there now, watch it instead. */
  private rootRenamed(): void {
    this.rewatching = this.rewatching.then(async () => {
      if (this.closed) return;
      const ino = (await stat(this.o.root).catch(() => null))?.ino ?? null;
      if (ino === this.rootIno) return;
      this.rootIno = ino;
      for (const w of this.watchers.values()) w.close();
      this.watchers.clear();
      if (ino === null) return; // gone: its return is another event of the parent
      await this.addTree('');
      this.o.onReplaced?.();
    });
  }

  private async addTree(rel: string): Promise<void> {
    const pending = [rel];
    while (pending.length && !this.closed) {
      const dir = pending.pop()!;
      if (!this.add(dir)) continue;
      let entries;
      try {
        entries = await readdir(join(this.o.root, dir), { withFileTypes: true });
      } catch {
        continue; // removed while we walked: its parent's watch reports that
      }
      for (const e of entries) if (e.isDirectory() && !(dir === '' && e.name === PARTIAL_DIR)) pending.push(dir ? `${dir}${sep}${e.name}` : e.name);
    }
  }

  private add(dir: string): boolean {
    if (this.watchers.has(dir)) return true;
    try {
      const w = watch(join(this.o.root, dir), { persistent: false }, (type, name) => this.event(dir, type, name));
      w.on('error', () => this.drop(dir));
      this.watchers.set(dir, w);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      const reason =
        code === 'ENOSPC'
          ? `the inotify watch limit is reached (${this.watchers.size} directories watched): raise fs.inotify.max_user_watches (sysctl); until then changes below ${join(this.o.root, dir)} are carried by the periodic reconciliation`
          : `cannot watch ${join(this.o.root, dir)}: ${(err as Error).message}`;
      if (!this.degraded) {
        this.degraded = reason;
        this.o.onDegraded(reason);
      }
      return false;
    }
  }

  /** A watched directory went away (deleted or renamed): drop its watch and those below it. */
  private drop(dir: string): void {
    for (const [d, w] of this.watchers) {
      if (d === dir || d.startsWith(`${dir}${sep}`)) {
        w.close();
        this.watchers.delete(d);
      }
    }
  }

  private event(dir: string, type: string, name: string | Buffer | null): void {
    if (this.closed) return;
    if (name === null) {
      this.o.onChange(dir); // the kernel did not say which entry: send the whole directory
      return;
    }
    const rel = dir ? `${dir}${sep}${name.toString()}` : name.toString();
    if (rel === PARTIAL_DIR || rel.startsWith(`${PARTIAL_DIR}${sep}`)) return;
    this.o.onChange(rel);
    if (type === 'rename') void this.renamed(rel);
  }

  /** A name appeared or disappeared: watch a new directory (and below it), forget a gone one. */
  private async renamed(rel: string): Promise<void> {
    const st = await stat(join(this.o.root, rel)).catch(() => null);
    if (st?.isDirectory()) {
      await this.addTree(rel);
      // Files written into it before its watch existed: the directory is sent again, whole.
      this.o.onChange(rel);
    } else if (!st) this.drop(rel);
  }
}
