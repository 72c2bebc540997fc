/**
 * The live feed behind a page's server-sent events: while at least one page is open it reads
 * what the page shows every `intervalMs` (the "Now" page: the same reading as `vigil status
 * --json`; the Timeline: the events and the database's history), and tells
 * every subscriber the view when it changed, or only that it is still fresh. With no page open
 * nothing is read: the dashboard costs the observer nothing then.
 */
import { createHash } from 'node:crypto';

export interface FeedUpdate<T> {
  /** The view, when it differs from the last one sent (always on the first update); else null. */
  view: T | null;
  /** With a view: its id, a digest of its content (the stream's event id: a page that reconnects with it already has this view). */
  id?: string;
  /** Wall-clock milliseconds of the reading. */
  at: number;
  /** Set when the reading failed: the last view stands, and it gets older. */
  error?: string;
}

/** A view's id: the first 16 hex digits of its JSON's SHA-256 (the same view gives the same id on every observer). */
export const viewId = (json: string): string => createHash('sha256').update(json).digest('hex').slice(0, 16);

export type Subscriber<T> = (u: FeedUpdate<T>) => void;

export class Feed<T> {
  private readonly subs = new Set<Subscriber<T>>();
  private last: { view: T; json: string; at: number; id: string } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Bumped by stop(): a reading still under way from before must not start a second loop. */
  private gen = 0;
  /** Readings made since the feed started, for tests: none while nobody watches. */
  readings = 0;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly intervalMs = 1000,
  ) {}

  /** Adds a subscriber; it gets the last view at once if there is one. Returns the unsubscribe. */
  subscribe(s: Subscriber<T>): () => void {
    this.subs.add(s);
    if (this.last) s({ view: this.last.view, at: this.last.at, id: this.last.id });
    if (!this.running) {
      this.running = true;
      void this.loop(this.gen);
    }
    return () => {
      this.subs.delete(s);
      if (this.subs.size === 0) this.stop();
    };
  }

  get subscribers(): number {
    return this.subs.size;
  }

  stop(): void {
    this.running = false;
    this.gen++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // The last view is dropped too: a page opened later must not be shown a stale one as new.
    this.last = null;
  }

  private async loop(gen: number): Promise<void> {
    const current = () => this.running && gen === this.gen;
    if (!current()) return;
    const at = Date.now();
    let update: FeedUpdate<T>;
    try {
      this.readings++;
      const view = await this.read();
      const json = JSON.stringify(view);
      const changed = this.last?.json !== json;
      if (!current()) return;
      const id = changed ? viewId(json) : this.last!.id;
      this.last = { view, json, at, id };
      update = changed ? { view, at, id } : { view: null, at };
    } catch (err) {
      update = { view: null, at: this.last?.at ?? 0, error: (err as Error).message };
    }
    if (!current()) return;
    for (const s of this.subs) s(update);
    this.timer = setTimeout(() => void this.loop(gen), this.intervalMs);
  }
}
