/**
 * The dashboard's server, really listening over HTTPS with a certificate of a real cluster CA,
 * driven by plain HTTPS requests: headers, login, cookies, the rate limit, the audit, the event
 * stream. The browser test against a lab is in test/lab/operator-commands.test.ts.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import type { NewEvent } from '../events/log.ts';
import { createClusterCa, issueCertificate, type ClusterCa } from '../pki/ca.ts';
import { LoginLimiter } from './auth.ts';
import { CSP, startDashboardServer, type DashboardServer } from './server.ts';
import { hashPassword } from './users.ts';
import type { NowView } from './view.ts';
import type { StoredEvent } from '../etcd/store.ts';
import { buildTimeline, type TimelineView } from './timeline.ts';
import { parseAction, type ActionForm } from './actions.ts';
import { clusterFixture } from '../testing/clusters.ts';
import { doctorView, type DoctorView } from './doctor.ts';
import type { DoctorRun } from '../model/ha.ts';

const HOST = '127.0.0.1';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const view = (epoch: number): NowView => ({
  cluster: 'lab',
  tiles: [{ id: 'active', label: 'Active app machine', value: `app1 at epoch ${epoch}`, detail: '', level: 'ok' }],
  machines: [{ machine: 'app1', address: '10.0.0.11', roles: 'app,db', app: 'ACTIVE', database: 'leader running', diskFree: '5.0 GiB' }],
  actions: { epoch, active: 'app1', maintenance: null, observerLeads: true, machines: [] },
});

describe('the dashboard server', () => {
  let ca: ClusterCa;
  let server: DashboardServer;
  const audited: NewEvent[] = [];
  const acted: (ActionForm & { user: string })[] = [];
  let epoch = 3;
  let readFails = false;
  const doctorRuns: DoctorRun[] = [];
  let doctorRunning: { by: string; since: string } | null = null;

  const call = (method: string, path: string, o: { cookie?: string; form?: Record<string, string>; headers?: Record<string, string> } = {}) =>
    new Promise<Answer>((resolve, reject) => {
      const body = o.form ? new URLSearchParams(o.form).toString() : undefined;
      const req = request(
        {
          host: HOST,
          port: server.port,
          path,
          method,
          ca: ca.certPem, // the cluster CA and nothing else: the server's certificate must chain to it
          headers: {
            ...(o.cookie ? { cookie: o.cookie } : {}),
            ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
            ...o.headers,
          },
          timeout: 10_000,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  const loginAs = async (name: string, password: string) => call('POST', '/login', { form: { name, password } });
  const cookieOf = (a: Answer) => String(a.headers['set-cookie']).split(';')[0]!;

  /** Opens /events and collects its events until `until` says stop (or 10 s pass). */
  const stream = (
    cookie: string,
    until: (events: { event: string; data: unknown; id?: string }[]) => boolean,
    path = '/events',
    headers: Record<string, string> = {},
  ) =>
    new Promise<{ status: number; events: { event: string; data: unknown; id?: string }[] }>((resolve, reject) => {
      const events: { event: string; data: unknown; id?: string }[] = [];
      const req = request({ host: HOST, port: server.port, path, ca: ca.certPem, headers: { cookie, ...headers } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return resolve({ status: res.statusCode!, events });
        }
        let buf = '';
        res.setEncoding('utf8');
        const deadline = setTimeout(() => req.destroy(new Error(`no end after 10 s; events: ${JSON.stringify(events)}`)), 10_000);
        res.on('data', (c: string) => {
          buf += c;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            const id = /^id: (.*)$/m.exec(block)?.[1];
            if (ev && data) events.push({ event: ev, data: JSON.parse(data), ...(id ? { id } : {}) });
          }
          if (until(events)) {
            clearTimeout(deadline);
            req.destroy();
            resolve({ status: 200, events });
          }
        });
      });
      req.on('error', (err) => (err.message.startsWith('no end') ? reject(err) : undefined));
      req.end();
    });

  before(async () => {
    ca = await createClusterCa({ clusterName: 'lab' });
    const id = await issueCertificate(ca, { commonName: 'observer', ipAddresses: [HOST], usage: 'both' });
    server = await startDashboardServer({
      cert: id.certPem,
      key: id.keyPem,
      host: HOST,
      port: 0,
      users: [
        { name: 'ann', role: 'viewer', passwordHash: await hashPassword('ann-secret-1') },
        { name: 'root', role: 'admin', passwordHash: await hashPassword('root-secret-1') },
      ],
      read: async () => {
        if (readFails) throw new Error('etcd does not answer');
        return view(epoch);
      },
      audit: async (e) => void audited.push(e),
      // The timeline of what was audited, as the observer builds it from etcd's events (serve.ts).
      readTimeline: async () =>
        buildTimeline(
          audited.map((e, i) => ({ ...e, seq: i + 1, at: e.at ?? new Date().toISOString() }) as StoredEvent),
          [],
          { cluster: 'lab' },
        ),
      // The real form check; carrying out stands in for etcd (actions.test.ts runs carryOut on a real one).
      parseAction: (f) => parseAction(f, clusterFixture('pair')),
      act: async (a, user) => {
        if (a.epoch !== epoch) return { ok: false, status: 409, message: `decided at epoch ${a.epoch}; now ${epoch}` };
        acted.push({ ...a, user });
        return { ok: true, message: `${a.kind} request r1 is with the observer` };
      },
      readDoctor: async () => doctorView('lab', doctorRuns, { running: doctorRunning }),
      runDoctor: (user) => {
        if (doctorRunning) return { started: false, message: `doctor is already running (${doctorRunning.by})` };
        doctorRunning = { by: user, since: new Date().toISOString() };
        return { started: true, message: 'doctor is running' };
      },
      log: () => {},
      intervalMs: 50,
      timelineIntervalMs: 50,
      doctorIntervalMs: 50,
      limiter: new LoginLimiter({ perClient: 5, overall: 100, windowMs: 60_000 }),
    });
  });
  after(async () => server?.close());

  it('every answer carries the strict CSP and the other security headers; the pages hold no inline script or style', async () => {
    assert.doesNotMatch(CSP, /unsafe-inline|unsafe-eval|\*/);
    for (const [method, path] of [
      ['GET', '/login'],
      ['GET', '/'],
      ['GET', '/app.js'],
      ['GET', '/app.css'],
      ['GET', '/events'],
      ['GET', '/timeline'],
      ['GET', '/timeline/events'],
      ['POST', '/timeline/ack'],
      ['GET', '/actions'],
      ['POST', '/actions'],
      ['GET', '/doctor'],
      ['GET', '/doctor/events'],
      ['POST', '/doctor/run'],
      ['GET', '/nothing'],
    ] as const) {
      const a = await call(method, path);
      assert.equal(a.headers['content-security-policy'], CSP, `${method} ${path}`);
      assert.equal(a.headers['x-content-type-options'], 'nosniff');
      assert.equal(a.headers['x-frame-options'], 'DENY');
      assert.match(String(a.headers['strict-transport-security']), /max-age=\d+/);
      assert.equal(a.headers['cache-control'], 'no-store');
      if (path === '/login') {
        assert.doesNotMatch(a.body, /<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
      }
    }
  });

  it('without a session: the page sends to /login, the event stream is 401', async () => {
    const page = await call('GET', '/');
    assert.equal(page.status, 303);
    assert.equal(page.headers.location, '/login');
    assert.equal((await call('GET', '/events')).status, 401);
    assert.equal((await call('GET', '/', { cookie: '__Host-vigil-session=guessed' })).status, 303);
  });

  it('a right login gets a session cookie (HttpOnly, Secure, SameSite=Strict) that opens the page; logout ends it', async () => {
    const a = await loginAs('ann', 'ann-secret-1');
    assert.equal(a.status, 303);
    assert.equal(a.headers.location, '/');
    const setCookie = String(a.headers['set-cookie']);
    assert.match(setCookie, /^__Host-vigil-session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; Secure; SameSite=Strict$/);
    const cookie = cookieOf(a);
    const page = await call('GET', '/', { cookie });
    assert.equal(page.status, 200);
    assert.match(page.body, /<script type="module" src="\/app\.js"><\/script>/);
    assert.doesNotMatch(page.body, /<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
    const out = await call('POST', '/logout', { cookie });
    assert.equal(out.status, 303);
    assert.match(String(out.headers['set-cookie']), /Max-Age=0/);
    assert.equal((await call('GET', '/', { cookie })).status, 303, 'the session is over');
  });

  it('a wrong password or an unknown name is refused and audited as a login-failed event, without the password', async () => {
    audited.length = 0;
    const wrong = await loginAs('ann', 'not-her-password');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers['set-cookie'], undefined);
    assert.match(wrong.body, /Wrong name or password/);
    assert.equal((await loginAs('<script>', 'x')).status, 401);
    assert.equal(audited.length, 2);
    assert.equal(audited[0]!.type, 'login-failed');
    assert.match(audited[0]!.message, /^dashboard login refused for "ann" from 127\.0\.0\.1: wrong password/);
    assert.match(audited[1]!.message, /refused for an invalid name from .*: no such user/);
    assert.ok(!JSON.stringify(audited).includes('not-her-password'), 'the password is in no event');
    assert.ok(!wrong.body.includes('ann'), 'the page does not echo the name');
  });

  it('a POST from another site is refused', async () => {
    const a = await call('POST', '/login', { form: { name: 'ann', password: 'ann-secret-1' }, headers: { origin: 'https://evil.example' } });
    assert.equal(a.status, 403);
    assert.equal(a.headers['set-cookie'], undefined);
  });

  it('the event stream: a snapshot at once, then a new one when the view changes, else "fresh"; no reading while nobody watches', async () => {
    const cookie = cookieOf(await loginAs('root', 'root-secret-1'));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.feed.readings, 0, 'no page open: no reading');
    epoch = 3;
    const first = await stream(cookie, (evs) => evs.filter((e) => e.event === 'fresh').length >= 2);
    assert.equal(first.events[0]!.event, 'snapshot');
    const snap = first.events[0]!.data as { at: number; view: NowView; user: string; role: string };
    assert.deepEqual(snap.view, view(3));
    assert.equal(snap.user, 'root');
    assert.equal(snap.role, 'admin');
    assert.ok(Math.abs(snap.at - Date.now()) < 60_000);
    const changed = await stream(cookie, (evs) => {
      if (evs.length === 1) epoch = 4; // after the first snapshot, the cluster moves
      return evs.filter((e) => e.event === 'snapshot').length >= 2;
    });
    const views = changed.events.filter((e) => e.event === 'snapshot').map((e) => (e.data as { view: NowView }).view.tiles[0]!.value);
    assert.deepEqual(views, ['app1 at epoch 3', 'app1 at epoch 4']);
    readFails = true;
    const failing = await stream(cookie, (evs) => evs.some((e) => (e.data as { error?: string }).error));
    readFails = false;
    assert.match(JSON.stringify(failing.events.at(-1)), /"event":"fresh".*"error":"etcd does not answer"/);
    // Closed: the feed stops reading.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.feed.subscribers, 0);
    const n = server.feed.readings;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.feed.readings, n, 'no reading once every page is closed');
  });

  it('a page that reconnects with the id of the view it holds (Last-Event-ID) gets "fresh", not the view again; with another id, the view as it is now', async () => {
    const cookie = cookieOf(await loginAs('root', 'root-secret-1'));
    epoch = 5;
    const first = await stream(cookie, (evs) => evs.length >= 1);
    const id = first.events[0]!.id;
    assert.equal(first.events[0]!.event, 'snapshot');
    assert.match(id ?? '', /^[0-9a-f]{16}$/);
    const again = await stream(cookie, (evs) => evs.length >= 2, '/events', { 'last-event-id': id! });
    assert.deepEqual(
      again.events.map((e) => e.event),
      ['fresh', 'fresh'],
      'the view it holds is not sent again',
    );
    epoch = 6; // it missed a change while away
    const missed = await stream(cookie, (evs) => evs.length >= 1, '/events', { 'last-event-id': id! });
    assert.equal(missed.events[0]!.event, 'snapshot');
    assert.equal((missed.events[0]!.data as { view: NowView }).view.tiles[0]!.value, 'app1 at epoch 6');
    assert.notEqual(missed.events[0]!.id, id);
  });

  it('Doctor: the page and stream need a session; the stream shows the kept reports; a viewer may not run it (403, audited); an admin may, once at a time (409)', async () => {
    assert.equal((await call('GET', '/doctor')).status, 303);
    assert.equal((await call('GET', '/doctor/events')).status, 401);
    doctorRuns.push({
      source: 'cli',
      by: 'root@admin',
      at: new Date().toISOString(),
      report: {
        startedAt: new Date().toISOString(),
        durationMs: 1200,
        machines: [{ name: 'app1', roles: ['app'], reachable: true, checks: [{ check: 'disk', status: 'warn' }] }],
        clusterChecks: [{ check: 'etcd', status: 'ok' }],
        findings: [
          { check: 'disk', severity: 'warn', machine: 'app1', what: '/var is 91% full', why: 'a full disk stops PostgreSQL', fix: 'free space on app1' },
        ],
        summary: { failures: 0, warnings: 1 },
      },
    });
    const admin = cookieOf(await loginAs('root', 'root-secret-1'));
    const page = await call('GET', '/doctor', { cookie: admin });
    assert.equal(page.status, 200);
    assert.match(page.body, /data-page="doctor"/);
    const s = await stream(admin, (evs) => evs.some((e) => e.event === 'snapshot'), '/doctor/events');
    const v = (s.events.find((e) => e.event === 'snapshot')!.data as { view: DoctorView }).view;
    assert.equal(v.reports[0]!.source, 'cli');
    assert.equal(v.reports[0]!.level, 'warn');
    assert.deepEqual(
      v.reports[0]!.parts.map((p) => [p.name, p.level, p.findings.map((f) => f.what)]),
      [
        [null, 'ok', []],
        ['app1', 'warn', ['/var is 91% full']],
      ],
    );
    const viewer = cookieOf(await loginAs('ann', 'ann-secret-1'));
    const before = audited.length;
    const refused = await call('POST', '/doctor/run', { cookie: viewer, form: {} });
    assert.equal(refused.status, 403);
    assert.equal(doctorRunning, null, 'nothing started');
    assert.match(JSON.stringify(audited.slice(before)), /action-refused.*run doctor.*viewer/);
    assert.equal((await call('POST', '/doctor/run', { cookie: admin, form: {}, headers: { origin: 'https://evil.example' } })).status, 403);
    assert.equal(doctorRunning, null);
    const ran = await call('POST', '/doctor/run', { cookie: admin, form: {} });
    assert.equal(ran.status, 303);
    assert.equal(ran.headers.location, '/doctor');
    assert.equal((doctorRunning as { by: string } | null)?.by, 'root', 'the run started, as root');
    const twice = await call('POST', '/doctor/run', { cookie: admin, form: {} });
    assert.equal(twice.status, 409);
    assert.match(twice.body, /already running/);
    doctorRunning = null;
  });

  it('the Timeline: its page and stream need a session; a viewer may not acknowledge (403, audited), an admin may, with a comment', async () => {
    assert.equal((await call('GET', '/timeline')).status, 303);
    assert.equal((await call('GET', '/timeline/events')).status, 401);
    assert.equal((await call('POST', '/timeline/ack', { form: { incident: 'e1', comment: 'x' } })).status, 401);
    audited.length = 0;
    audited.push({ type: 'node-lost', node: 'app1', message: 'app1 stopped answering' });
    const viewer = cookieOf(await loginAs('ann', 'ann-secret-1'));
    const admin = cookieOf(await loginAs('root', 'root-secret-1'));
    const page = await call('GET', '/timeline', { cookie: viewer });
    assert.equal(page.status, 200);
    assert.match(page.body, /<body data-page="timeline">/);
    assert.doesNotMatch(page.body, /<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');

    const refused = await call('POST', '/timeline/ack', { cookie: viewer, form: { incident: 'e1', comment: 'seen' } });
    assert.equal(refused.status, 403);
    assert.match(refused.body, /the viewer role may not acknowledge/);
    assert.equal(audited.at(-1)!.type, 'action-refused');
    assert.match(audited.at(-1)!.message, /acknowledge by ann \(viewer\) from .* refused: the viewer role may not acknowledge incidents/);
    assert.ok(!audited.some((e) => e.type === 'incident-acknowledged'));

    const n = audited.length;
    assert.equal((await call('POST', '/timeline/ack', { cookie: admin, form: { incident: '../x', comment: 'seen' } })).status, 400);
    assert.equal((await call('POST', '/timeline/ack', { cookie: admin, form: { incident: 'e1', comment: '  ' } })).status, 400);
    assert.equal((await call('POST', '/timeline/ack', { cookie: admin, form: { incident: 'e1', comment: 'x'.repeat(501) } })).status, 400);
    const evil = await call('POST', '/timeline/ack', { cookie: admin, form: { incident: 'e1', comment: 'seen' }, headers: { origin: 'https://evil.example' } });
    assert.equal(evil.status, 403);
    assert.equal(audited.length, n, 'nothing stored for a refused form');

    const ok = await call('POST', '/timeline/ack', { cookie: admin, form: { incident: 'e1', comment: 'disk\nreplaced ' } });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/timeline#e1');
    assert.deepEqual(audited.at(-1)!.details, { incident: 'e1', by: 'root', comment: 'disk replaced' });

    const live = await stream(admin, (evs) => evs.some((e) => e.event === 'snapshot'), '/timeline/events');
    const snap = live.events.find((e) => e.event === 'snapshot')!.data as { view: TimelineView; role: string };
    assert.equal(snap.role, 'admin');
    const acked = snap.view.incidents.find((i) => i.id === 'e1');
    assert.equal(acked?.title, 'app1 lost');
    assert.deepEqual(
      acked?.acks.map((a) => [a.by, a.comment]),
      [['root', 'disk replaced']],
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.timeline.subscribers, 0, 'the timeline is read only while a page is open');
  });

  it('Actions: a viewer is refused (403, audited); a form without the typed confirmation does nothing; a stale epoch is refused and audited; a right one is carried out and audited', async () => {
    assert.equal((await call('POST', '/actions', { form: { kind: 'switchover' } })).status, 401);
    const viewer = cookieOf(await loginAs('ann', 'ann-secret-1'));
    const admin = cookieOf(await loginAs('root', 'root-secret-1'));
    const page = await call('GET', '/actions', { cookie: viewer });
    assert.equal(page.status, 200);
    assert.match(page.body, /<body data-page="actions">/);
    assert.doesNotMatch(page.body, /<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
    epoch = 7;
    const good = { kind: 'switchover', to: 'app2', epoch: '7', confirm: 'app2', reason: 'kernel update' };
    audited.length = 0;
    acted.length = 0;

    const v = await call('POST', '/actions', { cookie: viewer, form: good });
    assert.equal(v.status, 403);
    assert.match(v.body, /The viewer role may not act/);
    assert.equal(audited.at(-1)?.type, 'action-refused');
    assert.match(audited.at(-1)!.message, /switchover by ann \(viewer\) from .* refused: the viewer role may not act/);

    const unconfirmed = await call('POST', '/actions', { cookie: admin, form: { ...good, confirm: 'app1' } });
    assert.equal(unconfirmed.status, 400);
    assert.match(unconfirmed.body, /Nothing was done: type `app2` in the confirmation field/);
    assert.equal(audited.length, 1, 'a form that does not confirm is not an action');

    const stale = await call('POST', '/actions', { cookie: admin, form: { ...good, epoch: '6' } });
    assert.equal(stale.status, 409);
    assert.match(stale.body, /Refused: decided at epoch 6; now 7/);
    assert.equal(audited.at(-1)?.type, 'action-refused');
    assert.equal(acted.length, 0, 'nothing carried out');

    const evil = await call('POST', '/actions', { cookie: admin, form: good, headers: { origin: 'https://evil.example' } });
    assert.equal(evil.status, 403);

    const ok = await call('POST', '/actions', { cookie: admin, form: good });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/timeline');
    assert.deepEqual(acted, [{ kind: 'switchover', to: 'app2', epoch: 7, reason: 'kernel update', user: 'root' }]);
    const e = audited.at(-1)!;
    assert.equal(e.type, 'action-requested');
    assert.match(
      e.message,
      /^root asked for switchover to app2 from the dashboard \(decided at epoch 7\): kernel update; switchover request r1 is with the observer$/,
    );
    assert.equal(e.details?.command, 'vigil switchover --to app2');
    epoch = 3;
  });

  it('login is rate-limited per client: after 5 failures even the right password waits (429, Retry-After)', async () => {
    for (let i = 0; i < 5; i++) assert.notEqual((await loginAs('ann', `wrong-${i}`)).status, 303);
    const a = await loginAs('ann', 'ann-secret-1');
    assert.equal(a.status, 429);
    assert.ok(Number(a.headers['retry-after']) > 0);
    assert.equal(a.headers['set-cookie'], undefined);
    assert.match(a.body, /Too many failed logins/);
  });
});
