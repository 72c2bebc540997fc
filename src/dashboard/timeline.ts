/**
 * The dashboard's Timeline (docs/dashboard.md): Vigil's events and the database's timeline
 * switches (Patroni's GET /history), grouped into incidents a person can read at a glance: a
 * failover with its phases and timings, a maintenance window, a run of file-sync trouble, a burst
 * of refused logins. Pure: the server reads the events and the history, this shapes them.
 *
 * Grouping: every item has a category; an item joins the newest incident of its category when it
 * comes at most `gapMs` after that incident's last item, else it opens a new one. In the failover
 * category an incident holds one app move (a failover, switchover or bootstrap that wrote a
 * record) and one database promotion at most: a second of either, or a machine lost after the
 * move, opens a new incident, however soon. The promotion may come before or after the app's
 * move (Patroni and the observer act apart), but more than `PROMOTION_WINDOW_MS` after it, it is
 * the next story's (a `pair` switchover promotes first). Acknowledgements
 * (`incident-acknowledged` events) are not items: they attach to the incident holding the item
 * they name, so an incident keeps its acknowledgement when it grows or its first item ages out of
 * etcd's history.
 */
import type { StoredEvent } from '../etcd/store.ts';
import type { EventType } from '../model/ha.ts';
import type { PatroniHistoryEntry } from '../patroni/client.ts';

export type Level = 'ok' | 'warn' | 'bad';

export const CATEGORIES = ['failover', 'maintenance', 'file-sync', 'air-gap', 'access', 'doctor'] as const;
export type Category = (typeof CATEGORIES)[number];

export interface TimelineItem {
  /** `e<seq>` for a Vigil event, `db<timeline>` for a database timeline switch: what an acknowledgement names. */
  id: string;
  at: string;
  source: 'vigil' | 'database';
  type: EventType | 'db-promoted';
  node?: string;
  epoch?: number;
  message: string;
  level: Level;
}

export interface Acknowledgement {
  by: string;
  at: string;
  comment: string;
}

export interface Incident {
  /** Its first item's id. */
  id: string;
  category: Category;
  title: string;
  level: Level;
  start: string;
  end: string;
  /** Oldest first. */
  items: TimelineItem[];
  /** From the incident's last `failover-done` event: how the move ended and each phase's duration. */
  outcome?: { kind: string; result: string; totalMs: number; phases: { phase: string; ms: number }[] };
  acks: Acknowledgement[];
}

export interface TimelineView {
  cluster: string;
  /** Newest first. */
  incidents: Incident[];
  /** Whether Patroni's history could be read, and why not. */
  database: { read: boolean; error?: string };
}

/** Items further apart than this open a new incident (of their category). */
export const INCIDENT_GAP_MS = 120_000;

/** A database promotion this long after an incident's app move belongs to the next incident. */
export const PROMOTION_WINDOW_MS = 20_000;

/** The order phases happen in (src/observer/metrics.ts PHASES). */
const PHASE_ORDER = ['detect', 'db_switchover', 'fence', 'app_start', 'proxy_switch'];

/** A failover, switchover or bootstrap that wrote a new active record (the decision's event names the machine it came from). */
const isMove = (e: StoredEvent) => (e.type === 'failover' || e.type === 'switchover' || e.type === 'bootstrap') && e.details?.from !== undefined;

const CATEGORY: Record<EventType, Category | null> = {
  bootstrap: 'failover',
  failover: 'failover',
  switchover: 'failover',
  fence: 'failover',
  activate: 'failover',
  'node-lost': 'failover',
  'node-back': 'failover',
  'observer-leader': 'failover',
  'request-failed': 'failover',
  'primary-fenced': 'failover',
  'db-leader-released': 'failover',
  'failover-done': 'failover',
  'maintenance-on': 'maintenance',
  'maintenance-off': 'maintenance',
  'files-quarantined': 'file-sync',
  'sync-failed': 'file-sync',
  'sync-recovered': 'file-sync',
  'airgap-import': 'air-gap',
  'airgap-refused': 'air-gap',
  'login-failed': 'access',
  'action-refused': 'access',
  'action-requested': 'failover', // maintenance ones: categoryOf
  'incident-acknowledged': null,
  'doctor-run': 'doctor',
};

const BAD: ReadonlySet<EventType> = new Set(['request-failed', 'sync-failed', 'airgap-refused', 'primary-fenced']);
const WARN: ReadonlySet<EventType> = new Set([
  'failover',
  'fence',
  'node-lost',
  'db-leader-released',
  'files-quarantined',
  'login-failed',
  'action-refused',
  'maintenance-on',
]);

const rank: Record<Level, number> = { ok: 0, warn: 1, bad: 2 };
const worst = (levels: Level[]): Level => levels.reduce<Level>((a, b) => (rank[b] > rank[a] ? b : a), 'ok');

function categoryOf(e: StoredEvent): Category | null {
  if (e.type === 'action-requested' && String(e.details?.action ?? '').startsWith('maintenance')) return 'maintenance';
  return CATEGORY[e.type];
}

function eventLevel(e: StoredEvent): Level {
  if (e.type === 'failover' && e.details?.outcome === 'no-candidate') return 'bad';
  if (e.type === 'failover-done') return e.details?.result === 'success' ? 'ok' : 'bad';
  if (e.type === 'doctor-run') return Number(e.details?.failures ?? 0) > 0 || e.details?.error ? 'bad' : Number(e.details?.warnings ?? 0) > 0 ? 'warn' : 'ok';
  return BAD.has(e.type) ? 'bad' : WARN.has(e.type) ? 'warn' : 'ok';
}

function eventItem(e: StoredEvent): TimelineItem {
  return {
    id: `e${e.seq}`,
    at: e.at,
    source: 'vigil',
    type: e.type,
    ...(e.node !== undefined ? { node: e.node } : {}),
    ...(e.epoch !== undefined ? { epoch: e.epoch } : {}),
    message: e.message,
    level: eventLevel(e),
  };
}

/** A timeline switch with a time (the first ones of a cluster have none: nothing to place). */
function historyItem(h: PatroniHistoryEntry): TimelineItem | null {
  if (!h.at || Number.isNaN(Date.parse(h.at))) return null;
  const who = h.newLeader ? `${h.newLeader} became the database primary` : 'a new database primary took over';
  return {
    id: `db${h.timeline}`,
    at: new Date(Date.parse(h.at)).toISOString(),
    source: 'database',
    type: 'db-promoted',
    ...(h.newLeader ? { node: h.newLeader } : {}),
    message: `${who}: timeline ${h.timeline} ended${h.reason ? ` (${h.reason})` : ''}`,
    level: 'warn',
  };
}

const ms = (iso: string) => Date.parse(iso);

export function buildTimeline(
  events: StoredEvent[],
  history: PatroniHistoryEntry[],
  o: { cluster?: string; gapMs?: number; databaseError?: string } = {},
): TimelineView {
  const gapMs = o.gapMs ?? INCIDENT_GAP_MS;
  const items: { item: TimelineItem; category: Category; event?: StoredEvent }[] = [];
  const acks: StoredEvent[] = [];
  for (const e of events) {
    const category = categoryOf(e);
    if (category === null) acks.push(e);
    else items.push({ item: eventItem(e), category, event: e });
  }
  for (const h of history) {
    const item = historyItem(h);
    if (item) items.push({ item, category: 'failover' });
  }
  // By time; events of one second keep their sequence order (a database switch sorts by its time).
  items.sort((a, b) => ms(a.item.at) - ms(b.item.at) || seqOf(a.item) - seqOf(b.item));

  const incidents: (Incident & { events: StoredEvent[] })[] = [];
  const open = new Map<Category, Incident & { events: StoredEvent[] }>();
  for (const { item, category, event } of items) {
    let inc = open.get(category);
    if (!inc || ms(item.at) - ms(inc.end) > gapMs || (category === 'failover' && opensAnother(inc, item, event))) {
      inc = { id: item.id, category, title: '', level: 'ok', start: item.at, end: item.at, items: [], acks: [], events: [] };
      incidents.push(inc);
      open.set(category, inc);
    }
    inc.items.push(item);
    inc.end = item.at;
    if (event) inc.events.push(event);
  }
  const byItem = new Map<string, Incident>();
  for (const inc of incidents) for (const it of inc.items) byItem.set(it.id, inc);
  for (const a of acks) {
    const target = typeof a.details?.incident === 'string' ? byItem.get(a.details.incident) : undefined;
    if (!target) continue;
    target.acks.push({ by: String(a.details?.by ?? 'someone'), at: a.at, comment: String(a.details?.comment ?? '') });
  }
  const view = incidents.map(({ events: evs, ...inc }) => finish(inc, evs));
  return { cluster: o.cluster ?? '', incidents: view.reverse(), database: o.databaseError ? { read: false, error: o.databaseError } : { read: true } };
}

/** A second app move, a second database promotion, or a machine lost once the app has moved: another story. */
function opensAnother(inc: { items: TimelineItem[]; events: StoredEvent[] }, item: TimelineItem, event: StoredEvent | undefined): boolean {
  const move = inc.events.filter(isMove).at(-1);
  if (event && isMove(event)) return move !== undefined;
  if (item.type === 'db-promoted')
    return inc.items.some((i) => i.type === 'db-promoted') || (move !== undefined && ms(item.at) - ms(move.at) > PROMOTION_WINDOW_MS);
  // A machine lost, or an operator asking for a move, once the app has moved: the next story.
  return (item.type === 'node-lost' || item.type === 'action-requested') && move !== undefined;
}

function seqOf(i: TimelineItem): number {
  return i.source === 'vigil' ? Number(i.id.slice(1)) : Number.MAX_SAFE_INTEGER;
}

function finish(inc: Incident, events: StoredEvent[]): Incident {
  const done = events.filter((e) => e.type === 'failover-done').at(-1);
  if (done) {
    const d = done.details ?? {};
    const phasesMs = (d.phasesMs ?? {}) as Record<string, number>;
    inc.outcome = {
      kind: String(d.kind ?? ''),
      result: String(d.result ?? ''),
      totalMs: Number(d.totalMs ?? 0),
      phases: Object.entries(phasesMs)
        .map(([phase, v]) => ({ phase, ms: v }))
        .sort((a, b) => PHASE_ORDER.indexOf(a.phase) - PHASE_ORDER.indexOf(b.phase)),
    };
  }
  // The level is the worst item's, except that a failover that ended well settles its incident:
  // the node lost and the fence were the way there, not a standing problem.
  const levels = inc.items.map((i) => i.level);
  inc.level = done && inc.outcome?.result === 'success' && !inc.items.some((i) => i.level === 'bad') ? 'ok' : worst(levels);
  if (inc.category === 'maintenance' && inc.items.filter((i) => i.type !== 'action-requested').at(-1)?.type === 'maintenance-off') inc.level = 'ok';
  if (inc.category === 'file-sync' && inc.items.at(-1)?.type === 'sync-recovered') inc.level = 'ok';
  inc.title = titleOf(inc, events);
  return inc;
}

function titleOf(inc: Incident, events: StoredEvent[]): string {
  const n = inc.items.length;
  const count = (type: string) => inc.items.filter((i) => i.type === type).length;
  switch (inc.category) {
    case 'failover': {
      const move = events.filter((e) => isMove(e) && e.type !== 'bootstrap').at(-1);
      if (move) {
        const from = typeof move.details?.from === 'string' ? `${move.details.from} → ` : '';
        const word = move.type === 'failover' ? 'Failover' : 'Switchover';
        const how = inc.outcome
          ? inc.outcome.result === 'success'
            ? `, ${(inc.outcome.totalMs / 1000).toFixed(1)} s`
            : `, ${inc.outcome.result}`
          : ', under way';
        return `${word} ${from}${move.node ?? '?'} (epoch ${move.epoch ?? '?'}${how})`;
      }
      const boot = events.find((e) => e.type === 'bootstrap');
      if (boot) return `Cluster started: ${boot.node ?? '?'} active at epoch ${boot.epoch ?? '?'}`;
      if (events.some((e) => e.type === 'failover' && e.details?.outcome === 'no-candidate')) return 'No failover possible: no standby is healthy';
      const promoted = inc.items.filter((i) => i.type === 'db-promoted').at(-1);
      if (promoted) return `Database failover: ${promoted.node ?? 'a new primary'} promoted`;
      const lost = inc.items.find((i) => i.type === 'node-lost');
      if (lost) return `${lost.node ?? 'A machine'} lost${count('node-back') ? ', then back' : ''}`;
      const asked = events.find((e) => e.type === 'action-requested');
      if (asked) return `${String(asked.details?.action ?? 'an action')} asked for from the dashboard`;
      return n === 1 ? inc.items[0]!.message : `${n} cluster events`;
    }
    case 'maintenance': {
      const last = inc.items.filter((i) => i.type !== 'action-requested').at(-1);
      return !last ? 'Maintenance asked for' : last.type === 'maintenance-off' ? 'Maintenance window (ended)' : 'Maintenance on';
    }
    case 'file-sync':
      return inc.items.at(-1)?.type === 'sync-recovered'
        ? 'File sync trouble (recovered)'
        : count('files-quarantined') === n
          ? 'Files quarantined'
          : 'File sync failing';
    case 'air-gap':
      return count('airgap-refused') ? 'Air-gap bundle refused' : 'Air-gap bundle imported';
    case 'doctor': {
      const last = inc.items.at(-1)!;
      return n === 1 ? last.message : `${n} doctor runs; the last: ${last.message}`;
    }
    case 'access': {
      const plural = (k: number, word: string) => (k ? `${k} refused ${word}${k === 1 ? '' : 's'}` : '');
      return [plural(count('login-failed'), 'login'), plural(count('action-refused'), 'action')].filter(Boolean).join(', ');
    }
  }
}
