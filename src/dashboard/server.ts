/**
 * The dashboard's HTTPS server (docs/dashboard.md), run by every observer: the login page, the
 * "Now" page and the Timeline with their script and style, each page's server-sent events
 * (`/events`, `/timeline/events`), and the Timeline's acknowledgement form. node:https
 * with the observer machine's certificate from the cluster CA; no framework (one page, a handful
 * of routes). Every answer carries a strict Content-Security-Policy: no inline script or style.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { NewEvent } from '../events/log.ts';
import { APP_JS } from './assets.generated.ts';
import { clearedCookie, LoginLimiter, sessionCookie, Sessions, tokenOf, type Session } from './auth.ts';
import { Feed, type FeedUpdate } from './feed.ts';
import { actionsPage, doctorPage, loginPage, nowPage, refusedPage, STYLE_CSS, timelinePage } from './pages.ts';
import type { DoctorView } from './doctor.ts';
import { equivalentCommand, oneLine, type ActionForm, type ActResult } from './actions.ts';
import type { TimelineView } from './timeline.ts';
import { decoyHash, verifyPassword, type DashboardUser } from './users.ts';
import type { NowView } from './view.ts';
import type { DashboardRole } from '../config/schema.ts';

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Sent with every answer. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CSP,
  'strict-transport-security': 'max-age=31536000',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // Not no-referrer: with it Chromium sends `Origin: null` on the login form's POST, which the origin check refuses.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

/** A comment line on the event stream this often, so no proxy or browser takes it for dead. */
const HEARTBEAT_MS = 15_000;

export interface DashboardServerOptions {
  /** PEM: the machine's certificate (and chain) and key, from the cluster CA. */
  cert: string;
  key: string;
  host: string;
  port: number;
  users: DashboardUser[];
  /** The cluster's status as the page shows it (src/dashboard/view.ts over src/ops/status.ts). */
  read: () => Promise<NowView>;
  /** The Timeline's incidents (src/dashboard/timeline.ts over the events and Patroni's history). */
  readTimeline: () => Promise<TimelineView>;
  /** Carries out a checked action (src/dashboard/actions.ts carryOut); refuses a stale one. */
  act: (a: ActionForm, user: string) => Promise<ActResult>;
  /** The Doctor page: the last reports kept in etcd, and a run from the page under way (src/dashboard/doctor.ts). */
  readDoctor: () => Promise<DoctorView>;
  /** Starts doctor from the observer for `user`; false (with why) when a run is already under way. It audits its own end. */
  runDoctor: (user: string) => { started: boolean; message: string };
  /** Checks a posted action form against the cluster (actions.ts parseAction). */
  parseAction: (form: URLSearchParams) => ActionForm | { error: string };
  /** Stores an event in the cluster's event history: refused logins and actions, acknowledgements. */
  audit: (e: NewEvent) => Promise<void>;
  log: (event: string, fields?: Record<string, unknown>) => void;
  /** How often the status is read while a "Now" page is open; default 1000. */
  intervalMs?: number;
  /** How often the Doctor page's reports are read while one is open; default 2000. */
  doctorIntervalMs?: number;
  /** How often the timeline is read while a Timeline page is open; default 2000. */
  timelineIntervalMs?: number;
  limiter?: LoginLimiter;
}

export interface DashboardServer {
  port: number;
  feed: Feed<NowView>;
  timeline: Feed<TimelineView>;
  doctor: Feed<DoctorView>;
  close(): Promise<void>;
}

export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  const sessions = new Sessions();
  const limiter = o.limiter ?? new LoginLimiter();
  const feed = new Feed(o.read, o.intervalMs ?? 1000);
  const timeline = new Feed(o.readTimeline, o.timelineIntervalMs ?? 2000);
  const doctor = new Feed(o.readDoctor, o.doctorIntervalMs ?? 2000);
  const ctx: Ctx = { o, sessions, limiter, feed, timeline, doctor };
  const server: Server = createServer({ cert: o.cert, key: o.key, minVersion: 'TLSv1.2', requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    handle(ctx, req, res).catch((err: unknown) => {
      o.log('dashboard-error', { path: pathOf(req), error: (err as Error).message });
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error; the observer log says why\n');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    feed,
    timeline,
    doctor,
    close: () =>
      new Promise<void>((resolve) => {
        feed.stop();
        timeline.stop();
        doctor.stop();
        server.close(() => resolve());
        for (const s of sockets) s.destroy(); // open event streams never end by themselves
      }),
  };
}

interface Ctx {
  o: DashboardServerOptions;
  sessions: Sessions;
  limiter: LoginLimiter;
  feed: Feed<NowView>;
  timeline: Feed<TimelineView>;
  doctor: Feed<DoctorView>;
}

const pathOf = (req: IncomingMessage) => (req.url ?? '/').split('?')[0]!;

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': `${type}; charset=utf-8`, ...extra }).end(body);
}

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = pathOf(req);
  const method = req.method ?? 'GET';
  if (method === 'GET' && path === '/app.js') return send(res, 200, 'text/javascript', APP_JS);
  if (method === 'GET' && path === '/app.css') return send(res, 200, 'text/css', STYLE_CSS);
  if (method === 'GET' && path === '/login') return send(res, 200, 'text/html', loginPage());
  // Browsers ask for it unprompted; a 404 would be a console error on every page.
  if (method === 'GET' && path === '/favicon.ico') return void res.writeHead(204, SECURITY_HEADERS).end();
  if (method === 'POST' && (path === '/login' || path === '/logout')) {
    if (!sameOrigin(req)) return send(res, 403, 'text/plain', 'refused: the request comes from another site\n');
    return path === '/login' ? login(ctx, req, res) : logout(ctx, req, res);
  }
  const session = ctx.sessions.get(tokenOf(req.headers.cookie));
  const page = PAGES[path];
  if (method === 'GET' && page) {
    if (!session) return send(res, 303, 'text/plain', 'log in first\n', { location: '/login' });
    return send(res, 200, 'text/html', page());
  }
  const stream = STREAMS[path];
  if (method === 'GET' && stream) {
    if (!session) return send(res, 401, 'text/plain', 'log in first\n');
    return events(stream(ctx) as Feed<unknown>, ctx, req, res, session);
  }
  if (method === 'POST' && path === '/doctor/run') {
    if (!sameOrigin(req)) return send(res, 403, 'text/plain', 'refused: the request comes from another site\n');
    if (!session) return send(res, 401, 'text/plain', 'log in first\n');
    return doctorRun(ctx, req, res, session);
  }
  if (method === 'POST' && path === '/actions') {
    if (!sameOrigin(req)) return send(res, 403, 'text/plain', 'refused: the request comes from another site\n');
    if (!session) return send(res, 401, 'text/plain', 'log in first\n');
    return action(ctx, req, res, session);
  }
  if (method === 'POST' && path === '/timeline/ack') {
    if (!sameOrigin(req)) return send(res, 403, 'text/plain', 'refused: the request comes from another site\n');
    if (!session) return send(res, 401, 'text/plain', 'log in first\n');
    return acknowledge(ctx, req, res, session);
  }
  return send(res, 404, 'text/plain', 'not found\n');
}

const PAGES: Record<string, () => string> = { '/': nowPage, '/timeline': timelinePage, '/actions': actionsPage, '/doctor': doctorPage };
const STREAMS: Record<string, (ctx: Ctx) => Feed<NowView> | Feed<TimelineView> | Feed<DoctorView>> = {
  '/events': (ctx) => ctx.feed,
  '/timeline/events': (ctx) => ctx.timeline,
  '/doctor/events': (ctx) => ctx.doctor,
};

/**
 * A POST from a browser names its page's origin; one from another site is refused (with
 * SameSite=Strict cookies it would carry no session anyway). Clients that send no Origin (curl,
 * scripts) carry no browser cookies either.
 */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  return origin === undefined || origin === `https://${req.headers.host ?? ''}`;
}

async function readForm(req: IncomingMessage, limit = 4096): Promise<URLSearchParams | null> {
  if (!/^application\/x-www-form-urlencoded\b/.test(req.headers['content-type'] ?? '')) return null;
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > limit) return null;
  }
  return new URLSearchParams(body);
}

/** A login name as it may appear in an event: the characters a name may have, at most 64 of them. */
const shownName = (name: string) => (/^[A-Za-z0-9_.@-]{1,64}$/.test(name) ? `"${name}"` : 'an invalid name');

async function login(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const client = req.socket.remoteAddress ?? 'unknown';
  const waitMs = ctx.limiter.retryAfterMs(client);
  if (waitMs > 0) {
    const seconds = Math.ceil(waitMs / 1000);
    return send(res, 429, 'text/html', loginPage(`Too many failed logins: try again in ${seconds} s.`), { 'retry-after': String(seconds) });
  }
  const form = await readForm(req);
  if (!form) return send(res, 400, 'text/html', loginPage('The login form was not understood.'));
  const name = form.get('name') ?? '';
  const password = form.get('password') ?? '';
  const user = ctx.o.users.find((u) => u.name === name);
  // An unknown name costs the same scrypt as a wrong password: the answer's time does not tell which.
  const ok = (await verifyPassword(user?.passwordHash ?? (await decoyHash()), password)) && user !== undefined;
  if (!ok) {
    ctx.limiter.failed(client);
    const limited = ctx.limiter.retryAfterMs(client) > 0;
    ctx.o.log('dashboard-login-failed', { user: shownName(name), client });
    await ctx.o
      .audit({
        type: 'login-failed',
        message: `dashboard login refused for ${shownName(name)} from ${client}: ${user ? 'wrong password' : 'no such user'}${limited ? '; further logins from there wait' : ''}`,
        details: { client, user: user?.name ?? null },
      })
      .catch((err: Error) => ctx.o.log('dashboard-audit-failed', { error: err.message }));
    return send(res, 401, 'text/html', loginPage('Wrong name or password.'));
  }
  const token = ctx.sessions.create(user.name, user.role);
  ctx.o.log('dashboard-login', { user: user.name, role: user.role, client });
  send(res, 303, 'text/plain', 'logged in\n', { location: '/', 'set-cookie': sessionCookie(token) });
}

function logout(ctx: Ctx, req: IncomingMessage, res: ServerResponse): void {
  ctx.sessions.end(tokenOf(req.headers.cookie));
  send(res, 303, 'text/plain', 'logged out\n', { location: '/login', 'set-cookie': clearedCookie() });
}

/** Roles that may act from the dashboard (acknowledge; later switchover and maintenance). */
export const ACTING_ROLES: readonly DashboardRole[] = ['operator', 'admin'];
/** What an acknowledgement names: an item of the timeline (src/dashboard/timeline.ts ids). */
const INCIDENT_ID = /^(e\d{1,15}|db\d{1,9})$/;
export const MAX_COMMENT = 500;

/**
 * POST /timeline/ack (form: incident, comment): stores an `incident-acknowledged` event naming
 * the user, the incident and the comment; the timeline shows it on its next reading. A viewer is
 * refused (403), and the refusal is an `action-refused` event.
 */
async function acknowledge(ctx: Ctx, req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
  const client = req.socket.remoteAddress ?? 'unknown';
  if (!ACTING_ROLES.includes(session.role)) {
    await refused(ctx, session, client, 'acknowledge', `the ${session.role} role may not acknowledge incidents`);
    return send(res, 403, 'text/plain', `refused: the ${session.role} role may not acknowledge incidents; an operator or admin may\n`);
  }
  const form = await readForm(req);
  const incident = form?.get('incident') ?? '';
  const comment = oneLine(form?.get('comment') ?? '');
  if (!form || !INCIDENT_ID.test(incident)) return send(res, 400, 'text/plain', 'refused: the form names no incident of the timeline (field `incident`)\n');
  if (comment.length === 0 || comment.length > MAX_COMMENT)
    return send(res, 400, 'text/plain', `refused: the comment (field \`comment\`) must have 1 to ${MAX_COMMENT} characters\n`);
  await ctx.o.audit({
    type: 'incident-acknowledged',
    message: `${session.user} acknowledged incident ${incident}: ${comment}`,
    details: { incident, by: session.user, comment },
  });
  ctx.o.log('dashboard-acknowledged', { user: session.user, incident });
  send(res, 303, 'text/plain', 'acknowledged\n', { location: `/timeline#${incident}` });
}

/** An action refused: stored as an `action-refused` event, logged, never thrown. */
async function refused(ctx: Ctx, session: Session, client: string, action: string, why: string): Promise<void> {
  ctx.o.log('dashboard-action-refused', { user: session.user, role: session.role, action, client, why });
  await ctx.o
    .audit({
      type: 'action-refused',
      message: `dashboard: ${action} by ${session.user} (${session.role}) from ${client} refused: ${why}`,
      details: { user: session.user, role: session.role, action, client, why },
    })
    .catch((err: Error) => ctx.o.log('dashboard-audit-failed', { error: err.message }));
}

/**
 * POST /actions (form: kind, to, epoch, confirm, reason): a switchover, manual failover or
 * maintenance change, after the role, the form and the typed confirmation are checked and the
 * epoch the page showed is still the record's. Done: an `action-requested` event and on to the
 * Timeline, where its progress shows. Refused: a page that says why, and an `action-refused`
 * event for a role or an epoch that did not hold.
 */
async function action(ctx: Ctx, req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
  const client = req.socket.remoteAddress ?? 'unknown';
  const form = await readForm(req);
  const kind = form?.get('kind') ?? 'an action';
  if (!ACTING_ROLES.includes(session.role)) {
    await refused(ctx, session, client, kind, `the ${session.role} role may not act`);
    return send(res, 403, 'text/html', refusedPage(`The ${session.role} role may not act; an operator or admin may.`));
  }
  const a = form ? ctx.o.parseAction(form) : { error: 'the form was not understood' };
  if ('error' in a) return send(res, 400, 'text/html', refusedPage(`Nothing was done: ${a.error}.`));
  const r = await ctx.o.act(a, session.user);
  if (!r.ok) {
    await refused(ctx, session, client, a.kind, r.message);
    return send(res, r.status, 'text/html', refusedPage(`Refused: ${r.message}.`));
  }
  await ctx.o
    .audit({
      type: 'action-requested',
      message: `${session.user} asked for ${a.kind}${a.to ? ` to ${a.to}` : ''} from the dashboard (decided at epoch ${a.epoch ?? 'none'}): ${a.reason || 'no reason given'}; ${r.message}`,
      details: { action: a.kind, to: a.to ?? null, epoch: a.epoch, by: session.user, reason: a.reason, command: equivalentCommand(a) },
    })
    .catch((err: Error) => ctx.o.log('dashboard-audit-failed', { error: err.message }));
  ctx.o.log('dashboard-action', { user: session.user, action: a.kind, to: a.to, epoch: a.epoch });
  send(res, 303, 'text/plain', `${r.message}\n`, { location: '/timeline' });
}

/**
 * POST /doctor/run: doctor from this observer (what it sees of the cluster; src/dashboard/doctor.ts),
 * for an operator or admin; the page follows the run on its stream. A viewer is refused (403,
 * audited) and so is a second run while one is under way (409).
 */
async function doctorRun(ctx: Ctx, req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
  const client = req.socket.remoteAddress ?? 'unknown';
  if (!ACTING_ROLES.includes(session.role)) {
    await refused(ctx, session, client, 'run doctor', `the ${session.role} role may not run doctor`);
    return send(res, 403, 'text/html', refusedPage(`The ${session.role} role may not run doctor; an operator or admin may.`, '/doctor'));
  }
  const r = ctx.o.runDoctor(session.user);
  if (!r.started) return send(res, 409, 'text/html', refusedPage(`Not started: ${r.message}.`, '/doctor'));
  ctx.o.log('dashboard-doctor-run', { user: session.user });
  send(res, 303, 'text/plain', `${r.message}\n`, { location: '/doctor' });
}

/**
 * `text/event-stream`: `snapshot` with the view when it changed, `fresh` when it did not (the page
 * shows the data's age). Each snapshot has the view's id as its event id: a page that reconnects
 * (the browser sends `Last-Event-ID`) and already holds the view being sent gets `fresh` instead of
 * it again; one that missed changes gets the view as it is now, which holds every change it missed.
 */
function events<T>(feed: Feed<T>, ctx: Ctx, req: IncomingMessage, res: ServerResponse, session: Session): void {
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.write(`retry: 2000\n: user ${session.user} (${session.role})\n\n`);
  const token = tokenOf(req.headers.cookie);
  let held = typeof req.headers['last-event-id'] === 'string' ? req.headers['last-event-id'] : undefined;
  const unsubscribe = feed.subscribe((u: FeedUpdate<T>) => {
    // A session ended elsewhere (logout) ends the stream; the page's reconnect then gets 401.
    if (!ctx.sessions.get(token)) return res.end();
    const at = u.at;
    const known = u.view !== null && u.id !== undefined && u.id === held;
    held = undefined; // only the first view can be one the page holds
    if (u.view && !known) res.write(`id: ${u.id}\nevent: snapshot\ndata: ${JSON.stringify({ at, view: u.view, user: session.user, role: session.role })}\n\n`);
    else
      res.write(
        `event: fresh\ndata: ${JSON.stringify({ at, ...(u.error ? { error: u.error } : {}), ...(known ? { user: session.user, role: session.role } : {}) })}\n\n`,
      );
  });
  const beat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
  res.once('close', () => {
    clearInterval(beat);
    unsubscribe();
  });
}
