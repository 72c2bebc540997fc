/**
 * The pages' script (bundled by src/dashboard/build.ts into assets.generated.ts). On the "Now"
 * page it draws the tiles and the machine table; on the Timeline, the incidents with their
 * phases, items and acknowledgements (and the form to acknowledge, for roles that may act). Both
 * from the server's events, showing whether the stream is live or reconnecting and the age of
 * what it shows. Nothing but text reaches the document (no innerHTML), so a machine's name, an
 * error message or a comment cannot inject markup.
 */
import type { Incident, TimelineView } from '../timeline.ts';
import type { NowView } from '../view.ts';

/** Data older than this is marked stale (the server reads every second while a page is open). */
const STALE_MS = 5000;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let lastAt = 0;
let lastError: string | undefined;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string | null, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawNow(view: NowView): void {
  $('cluster').textContent = view.cluster;
  const tiles = view.tiles.map((t) => {
    const s = el('section', `tile ${t.level}`);
    s.dataset.tile = t.id;
    s.append(el('h2', null, t.label), el('p', 'value', t.value), el('p', 'detail', t.detail));
    return s;
  });
  $('tiles').replaceChildren(...tiles);
  const rows = view.machines.map((m) => {
    const tr = el('tr', null);
    tr.dataset.machine = m.machine;
    const app = el('td', m.app.startsWith('ACTIVE') ? 'active' : /UNREACHABLE|NOT READY|UNHEALTHY/.test(m.app) ? 'bad' : null, m.app);
    tr.append(el('td', null, m.machine), el('td', null, m.address), el('td', null, m.roles), app, el('td', null, m.database), el('td', null, m.diskFree));
    return tr;
  });
  $<HTMLTableElement>('machines').tBodies[0]!.replaceChildren(...rows);
}

function connection(state: 'live' | 'reconnecting'): void {
  const c = $('conn');
  c.className = `conn ${state}`;
  c.textContent = state === 'live' ? 'live' : 'reconnecting…';
}

function showAge(): void {
  const a = $('age');
  if (!lastAt) return;
  const ageMs = Date.now() - lastAt;
  a.textContent = `data ${Math.max(0, Math.round(ageMs / 1000))} s old${lastError ? `: ${lastError}` : ''}`;
  a.classList.toggle('stale', ageMs > STALE_MS || lastError !== undefined);
}

const ACTING_ROLES = ['operator', 'admin'];
const PHASE_WORDS: Record<string, string> = {
  detect: 'detect',
  db_switchover: 'database switchover',
  fence: 'fence',
  app_start: 'app start',
  proxy_switch: 'proxy switch',
};
const time = (iso: string) => new Date(iso).toLocaleString();
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
/** A timeline that came while the reader typed a comment: drawn once the field is left. */
let pending: { view: TimelineView; role: string } | null = null;
/** Incidents whose item list the reader opened: kept open across redraws. */
const opened = new Set<string>();

function incidentElement(inc: Incident, role: string): HTMLElement {
  const a = el('article', `incident ${inc.level}`);
  a.id = inc.id;
  a.dataset.incident = inc.id;
  a.dataset.category = inc.category;
  const span = Date.parse(inc.end) - Date.parse(inc.start);
  a.append(el('h2', null, inc.title), el('p', 'when', `${time(inc.start)}${span > 0 ? `, for ${secs(span)}` : ''} · ${inc.category}`));
  if (inc.outcome) {
    const ul = el('ul', 'phases');
    ul.setAttribute('aria-label', 'phases');
    for (const p of inc.outcome.phases) {
      const li = el('li', null, `${PHASE_WORDS[p.phase] ?? p.phase} ${secs(p.ms)}`);
      li.dataset.phase = p.phase;
      ul.append(li);
    }
    ul.append(el('li', null, `total ${secs(inc.outcome.totalMs)} (${inc.outcome.result})`));
    a.append(ul);
  }
  const det = el('details', null);
  det.open = opened.has(inc.id);
  det.addEventListener('toggle', () => (det.open ? opened.add(inc.id) : opened.delete(inc.id)));
  det.append(el('summary', null, `${inc.items.length} event${inc.items.length === 1 ? '' : 's'}`));
  const table = el('table', null);
  for (const it of inc.items) {
    const tr = el('tr', null);
    tr.dataset.type = it.type;
    tr.append(
      el('td', null, time(it.at)),
      el('td', it.source === 'database' ? 'database' : null, it.source === 'database' ? 'database' : it.type),
      el('td', null, it.message),
    );
    table.append(tr);
  }
  det.append(table);
  a.append(det);
  if (inc.acks.length) {
    const ul = el('ul', 'acks');
    for (const k of inc.acks) ul.append(el('li', null, `acknowledged by ${k.by}, ${time(k.at)}: ${k.comment}`));
    a.append(ul);
  } else if (ACTING_ROLES.includes(role)) {
    const f = el('form', null);
    f.method = 'post';
    f.action = '/timeline/ack';
    const id = el('input', null);
    id.type = 'hidden';
    id.name = 'incident';
    id.value = inc.id;
    const comment = el('input', null);
    comment.name = 'comment';
    comment.required = true;
    comment.maxLength = 500;
    comment.placeholder = 'comment (what was done, who looks at it)';
    comment.setAttribute('aria-label', `comment on ${inc.title}`);
    f.append(id, comment, el('button', null, 'Acknowledge'));
    a.append(f);
  }
  return a;
}

function drawTimeline(view: TimelineView, role: string): void {
  // A reader typing a comment is not interrupted: the list is redrawn once the field is left.
  const typing = document.activeElement instanceof HTMLInputElement && document.activeElement.name === 'comment' && document.activeElement.value !== '';
  if (typing) return void (pending = { view, role });
  $('cluster').textContent = view.cluster;
  $('db-history').textContent = view.database.read ? '' : `The database's history could not be read: ${view.database.error ?? ''}`;
  const list = view.incidents.map((i) => incidentElement(i, role));
  $('incidents').replaceChildren(...(list.length ? list : [el('p', 'note', 'No events yet.')]));
}
document.addEventListener('focusout', () => {
  if (!pending) return;
  const p = pending;
  pending = null;
  setTimeout(() => drawTimeline(p.view, p.role), 0);
});

const PAGE = document.body.dataset.page === 'timeline' ? 'timeline' : 'now';

function start(): void {
  const es = new EventSource(PAGE === 'timeline' ? '/timeline/events' : '/events');
  es.addEventListener('open', () => connection('live'));
  es.addEventListener('snapshot', (e) => {
    const d = JSON.parse((e as MessageEvent<string>).data) as { at: number; view: unknown; user: string; role: string };
    lastAt = d.at;
    lastError = undefined;
    $('user').textContent = `${d.user} (${d.role})`;
    if (PAGE === 'timeline') drawTimeline(d.view as TimelineView, d.role);
    else drawNow(d.view as NowView);
    connection('live');
    showAge();
  });
  es.addEventListener('fresh', (e) => {
    const d = JSON.parse((e as MessageEvent<string>).data) as { at: number; error?: string };
    if (d.at) lastAt = d.at;
    lastError = d.error;
    showAge();
  });
  es.addEventListener('error', () => {
    // The browser retries by itself while the stream is CONNECTING; CLOSED means the server
    // refused it (the session is over): log in again.
    if (es.readyState === EventSource.CLOSED) window.location.assign('/login');
    else connection('reconnecting');
  });
}

setInterval(showAge, 1000);
start();
