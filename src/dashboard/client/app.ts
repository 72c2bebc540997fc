/**
 * The pages' script (bundled by src/dashboard/build.ts into assets.generated.ts). On the "Now"
 * page it draws the tiles and the machine table; on the Timeline, the incidents with their
 * phases, items and acknowledgements (and the form to acknowledge, for roles that may act). Both
 * from the server's events, showing whether the stream is live or reconnecting and the age of
 * what it shows. Nothing but text reaches the document (no innerHTML), so a machine's name, an
 * error message or a comment cannot inject markup.
 */
import { equivalentCommand, expectedConfirmation, type ActionKind } from '../action-words.ts';
import type { ActionsView } from '../actions.ts';
import type { DoctorPartView, DoctorReportView, DoctorView } from '../doctor.ts';
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

/** The epoch the Actions page's forms were drawn with: what they carry back, whatever comes later. */
let decidedEpoch: number | null | undefined;

function field(label: string, input: HTMLInputElement | HTMLSelectElement): HTMLLabelElement {
  const l = el('label', null, label);
  l.append(input);
  return l;
}

function hidden(name: string, value: string): HTMLInputElement {
  const i = el('input', null);
  i.type = 'hidden';
  i.name = name;
  i.value = value;
  return i;
}

function textInput(name: string, required: boolean, max: number): HTMLInputElement {
  const i = el('input', null);
  i.name = name;
  i.required = required;
  i.maxLength = max;
  i.autocomplete = 'off';
  return i;
}

/** One action's form: the target (for moves), what gets fenced, the shell equivalent, the typed confirmation, the reason. */
function actionForm(kind: ActionKind, title: string, button: string, a: ActionsView, acting: boolean): HTMLFormElement {
  const f = el('form', 'action');
  f.method = 'post';
  f.action = '/actions';
  f.dataset.action = kind;
  f.append(el('h2', null, title), hidden('kind', kind), hidden('epoch', a.epoch === null ? 'none' : String(a.epoch)));
  const maintenance = kind.startsWith('maintenance');
  const standbys = a.machines.filter((m) => !m.active);
  let to: HTMLSelectElement | null = null;
  if (!maintenance) {
    to = el('select', null);
    to.name = 'to';
    for (const m of standbys) {
      const o = el('option', null, `${m.name} (${m.ready ? 'ready' : 'not ready'})`);
      o.value = m.name;
      to.append(o);
    }
    f.append(field('Make active', to));
    f.append(
      el('p', 'fence', a.active ? `${a.active} will be fenced: its agent stops the application and every proxy puts it in MAINT.` : 'No machine is active.'),
    );
  } else {
    f.append(
      el(
        'p',
        'fence',
        kind === 'maintenance-on'
          ? 'While maintenance is on the observer takes no action at all: no failover.'
          : `Maintenance is on since ${a.maintenance?.since ?? '?'} by ${a.maintenance?.by ?? '?'}: ${a.maintenance?.reason ?? ''}. Off, the observer acts again.`,
      ),
    );
  }
  const command = el('p', 'command');
  const confirm = textInput('confirm', true, 64);
  const confirmLabel = el('label', null);
  const reason = textInput('reason', kind !== 'maintenance-off', 200);
  const update = () => {
    const target = to?.value ?? '';
    const word = expectedConfirmation({ kind, ...(target ? { to: target } : {}) });
    confirmLabel.replaceChildren(document.createTextNode(`Type ${word} to confirm`), confirm);
    const cmd = equivalentCommand({ kind, ...(target ? { to: target } : {}), reason: reason.value.trim() || 'REASON' });
    const code = el('code', null, cmd);
    command.replaceChildren(document.createTextNode('From a shell: '), code);
  };
  to?.addEventListener('change', update);
  reason.addEventListener('input', update);
  update();
  f.append(confirmLabel, field('Reason', reason), command);
  const b = el('button', null, button);
  b.type = 'submit';
  if (!acting || (!maintenance && standbys.length === 0)) {
    for (const e of [to, confirm, reason, b]) if (e) e.disabled = true;
    f.append(el('p', 'note', acting ? 'No other app machine to move to.' : 'Your role may not act; an operator or admin may.'));
  }
  f.append(b);
  return f;
}

function drawActions(view: NowView, role: string): void {
  const a = view.actions;
  $('cluster').textContent = view.cluster;
  const rows = a.machines.map((m) => {
    const tr = el('tr', null);
    tr.dataset.machine = m.name;
    const sync = m.syncError ? `FAILING: ${m.syncError}` : m.syncBacklog === null ? (m.active ? 'pushes' : 'not reported') : `backlog ${m.syncBacklog}`;
    tr.append(
      el('td', null, m.name),
      el('td', m.active ? 'active' : m.ready ? null : 'bad', m.standing),
      el('td', null, m.database || '—'),
      el('td', null, sync),
    );
    return tr;
  });
  $<HTMLTableElement>('preflight').tBodies[0]!.replaceChildren(...rows);
  if (decidedEpoch === undefined) {
    decidedEpoch = a.epoch;
    const acting = ACTING_ROLES.includes(role);
    $('forms').replaceChildren(
      actionForm('switchover', 'Switchover (both tiers, planned)', 'Switch over', a, acting),
      actionForm('failover', 'Manual failover (the app only)', 'Fail over', a, acting),
      a.maintenance
        ? actionForm('maintenance-off', 'Maintenance', 'Turn maintenance off', a, acting)
        : actionForm('maintenance-on', 'Maintenance', 'Turn maintenance on', a, acting),
    );
  }
  const moved = $('moved');
  moved.hidden = a.epoch === decidedEpoch;
  moved.textContent = moved.hidden
    ? ''
    : `The cluster has moved since this page was drawn (epoch ${decidedEpoch ?? 'none'}, now ${a.epoch ?? 'none'}): these forms would be refused. Reload the page to decide again.`;
}

const CHECK_WORDS: Record<string, string> = { ok: 'ok', warn: 'warning', fail: 'FAILED', skipped: 'not run' };

function partElement(p: DoctorPartView): HTMLElement {
  const s = el('section', `part ${p.level}`);
  s.dataset.part = p.name ?? 'cluster';
  s.append(el('h3', null, p.name === null ? 'The cluster as a whole' : `${p.name}${p.roles ? ` (${p.roles})` : ''}`));
  const checks = el('ul', 'checks');
  for (const c of p.checks) {
    const li = el('li', c.status, `${c.check}: ${CHECK_WORDS[c.status] ?? c.status}`);
    if (c.note) li.title = c.note;
    checks.append(li);
  }
  s.append(checks);
  const skipped = p.checks.find((c) => c.status === 'skipped' && c.note);
  if (skipped?.note && p.checks.every((c) => c.status === 'skipped')) s.append(el('p', 'note', skipped.note));
  for (const f of p.findings) {
    const d = el('div', `finding ${f.severity}`);
    const fix = el('p', 'fix', 'fix: ');
    fix.append(el('code', null, f.fix));
    d.append(el('p', 'what', `${f.severity === 'fail' ? 'FAIL' : 'warn'} [${f.check}] ${f.what}`), el('p', 'why', `why: ${f.why}`), fix);
    s.append(d);
  }
  return s;
}

function reportElement(r: DoctorReportView): HTMLElement {
  const s = el('section', `report ${r.level}`);
  s.dataset.source = r.source;
  const n = (k: number, word: string) => `${k} ${word}${k === 1 ? '' : 's'}`;
  s.append(el('h2', null, r.unreadable ? r.title : `${r.title}: ${n(r.summary.failures, 'failure')}, ${n(r.summary.warnings, 'warning')}`));
  s.append(el('p', 'when', `run by ${r.by}, ${time(r.at)}${r.durationMs ? `, in ${secs(r.durationMs)}` : ''}`));
  if (r.unreadable) {
    s.append(el('p', 'error', r.unreadable));
    return s;
  }
  s.append(el('p', 'scope', `Checked: ${r.scope}.`));
  for (const p of r.parts) s.append(partElement(p));
  return s;
}

function drawDoctor(view: DoctorView, role: string): void {
  $('cluster').textContent = view.cluster;
  const button = document.querySelector<HTMLButtonElement>('#run-doctor button')!;
  const acting = ACTING_ROLES.includes(role);
  button.disabled = !acting || view.running !== null;
  const state = $('doctor-state');
  state.classList.toggle('error', view.lastError !== null && view.running === null);
  state.textContent = view.running
    ? `running (${view.running.by}, since ${time(view.running.since)})…`
    : view.lastError
      ? `the last run from this page failed: ${view.lastError}`
      : acting
        ? ''
        : `the ${role} role may not run doctor; an operator or admin may`;
  const reports = view.reports.map(reportElement);
  if (!view.reports.some((r) => r.source === 'cli'))
    reports.unshift(el('p', 'note', `No report of every machine yet: run \`${view.command}\` from the admin's machine; it keeps its report here.`));
  $('reports').replaceChildren(...reports);
}

const PAGES = ['now', 'timeline', 'actions', 'doctor'] as const;
const PAGE = PAGES.find((p) => p === document.body.dataset.page) ?? 'now';
const STREAM: Record<(typeof PAGES)[number], string> = { now: '/events', timeline: '/timeline/events', actions: '/events', doctor: '/doctor/events' };

function start(): void {
  const es = new EventSource(STREAM[PAGE]);
  es.addEventListener('open', () => connection('live'));
  es.addEventListener('snapshot', (e) => {
    const d = JSON.parse((e as MessageEvent<string>).data) as { at: number; view: unknown; user: string; role: string };
    lastAt = d.at;
    lastError = undefined;
    $('user').textContent = `${d.user} (${d.role})`;
    if (PAGE === 'timeline') drawTimeline(d.view as TimelineView, d.role);
    else if (PAGE === 'actions') drawActions(d.view as NowView, d.role);
    else if (PAGE === 'doctor') drawDoctor(d.view as DoctorView, d.role);
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
