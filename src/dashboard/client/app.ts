/**
 * The "Now" page's script (bundled by src/dashboard/build.ts into assets.generated.ts): draws the
 * tiles and the machine table from the server's events, shows whether the stream is live or
 * reconnecting, and the age of what it shows. Nothing but text reaches the document (no
 * innerHTML), so a machine's name or an error message cannot inject markup.
 */
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

function draw(view: NowView): void {
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

function start(): void {
  const es = new EventSource('/events');
  es.addEventListener('open', () => connection('live'));
  es.addEventListener('snapshot', (e) => {
    const d = JSON.parse((e as MessageEvent<string>).data) as { at: number; view: NowView; user: string; role: string };
    lastAt = d.at;
    lastError = undefined;
    $('user').textContent = `${d.user} (${d.role})`;
    draw(d.view);
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
