import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { VigilEvent } from '../model/ha.ts';
import { alertProblems, alertsSchema, type AlertsInput } from '../config/alerts.ts';
import { alertOnFollow } from './followed.ts';
import { bodyOf, subjectOf } from './format.ts';
import { createAlerter, type AlertResult, type Clock } from './send.ts';

// ---------------------------------------------------------------- fixtures

const failover: VigilEvent = {
  seq: 17,
  at: '2025-03-01T10:00:00.000Z',
  type: 'failover',
  node: 'app2',
  epoch: 4,
  message: 'app1 failed its health check for 3 s; app2 is active at epoch 4.',
  details: { from: 'app1', failedChecks: 3, lastError: 'HTTP 503' },
};

const ev = (type: VigilEvent['type'], node?: string, at = '2025-03-01T10:00:00.000Z'): VigilEvent => ({ at, type, node, message: `${type} ${node ?? ''}` });

const config = (input: AlertsInput) => alertsSchema.parse(input);

interface Received {
  mail: ParsedMail;
  rcpt: string[];
  user: unknown;
  secure: boolean;
}

/** A real SMTP server on 127.0.0.1:<random>, keeping every message it receives. */
async function smtpServer(opts: { login?: { user: string; pass: string }; starttls?: boolean } = {}) {
  const received: Received[] = [];
  const server = new SMTPServer({
    logger: false,
    disabledCommands: opts.starttls ? [] : ['STARTTLS'],
    authOptional: !opts.login,
    allowInsecureAuth: true,
    onAuth(auth, _session, cb) {
      if (opts.login && auth.username === opts.login.user && auth.password === opts.login.pass) return cb(null, { user: auth.username });
      // Echo what was sent, as some relays do: the client must scrub it from its error.
      cb(new Error(`Authentication failed for ${auth.username} with password ${auth.password}`));
    },
    onData(stream, session, cb) {
      simpleParser(stream).then(
        (mail) => {
          received.push({ mail, rcpt: session.envelope.rcptTo.map((r) => r.address), user: session.user, secure: session.secure });
          cb();
        },
        (err: Error) => cb(err),
      );
    },
  } satisfies SMTPServerOptions);
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  const port = (server.server.address() as net.AddressInfo).port;
  return { port, received, close: () => new Promise<void>((r) => server.close(() => r())) };
}

interface Hit {
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

/** A webhook receiver answering with the next status of `statuses` (the last one repeats). */
async function receiver(statuses: (number | 'hang')[] = [200], reply = (_h: Hit) => 'ok') {
  const hits: Hit[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit = { headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown };
      hits.push(hit);
      const status = statuses[Math.min(hits.length - 1, statuses.length - 1)] ?? 200;
      if (status === 'hang') return; // never answers
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(reply(hit));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hooks/vigil`;
  return {
    url,
    hits,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A clock the test moves by hand; timers fire when it passes them. */
function fakeClock(start = 1_000_000): Clock & { advance(ms: number): void; pending(): number } {
  let now = start;
  let nextId = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout: (fn, ms) => (timers.set(++nextId, { at: now + ms, fn }), nextId),
    clearTimeout: (h) => void timers.delete(h as number),
    advance(ms) {
      now += ms;
      for (const [id, t] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
        if (t.at <= now) {
          timers.delete(id);
          t.fn();
        }
      }
    },
    pending: () => timers.size,
  };
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const only = (results: AlertResult[]): AlertResult => {
  assert.equal(results.length, 1, JSON.stringify(results));
  return results[0]!;
};

const cleanups: (() => Promise<unknown>)[] = [];
after(() => Promise.all(cleanups.map((c) => c())));

// ---------------------------------------------------------------- e-mail

describe('e-mail alerts', () => {
  const email = (port: number, smtp: Record<string, unknown> = {}) => ({
    to: ['ops@example.com', 'oncall@example.com'],
    from: 'vigil@example.com',
    smtp: { host: '127.0.0.1', port, starttls: 'off' as const, timeoutMs: 3000, ...smtp },
  });

  it('sends subject, body and recipients through a relay without login', async () => {
    const srv = await smtpServer();
    cleanups.push(srv.close);
    const alerter = createAlerter(config({ email: email(srv.port) }), {}, { clusterName: 'prod' });
    const r = only(await alerter.alert(failover));
    assert.deepEqual({ ...r, ms: 0 }, { channel: 'email', ok: true, attempts: 1, ms: 0 });
    assert.equal(srv.received.length, 1);
    const { mail, rcpt } = srv.received[0]!;
    assert.deepEqual(rcpt.sort(), ['oncall@example.com', 'ops@example.com']);
    assert.equal(mail.subject, '[vigil prod] failover: app1 -> app2 (epoch 4)');
    assert.equal(mail.from?.value[0]?.address, 'vigil@example.com');
    assert.equal(mail.headers.get('auto-submitted'), 'auto-generated');
    assert.equal(mail.headers.get('x-vigil-event'), 'failover');
    const text = mail.text ?? '';
    for (const want of [
      failover.message,
      'Time:     2025-03-01T10:00:00.000Z',
      'Machine:  app1 -> app2',
      'Epoch:    4',
      'Sequence: 17',
      '"lastError": "HTTP 503"',
      'vigil status',
      'vigil events',
    ]) {
      assert.ok(text.includes(want), `body lacks ${want}:\n${text}`);
    }
    await alerter.close();
  });

  it('logs in with the password from the secrets file; a single `to` is accepted', async () => {
    const srv = await smtpServer({ login: { user: 'vigil', pass: 's3cret-Pa55' } });
    cleanups.push(srv.close);
    const cfg = config({ email: { ...email(srv.port, { user: 'vigil' }), to: 'ops@example.com' } });
    const alerter = createAlerter(cfg, { smtpPassword: 's3cret-Pa55' }, { clusterName: 'prod' });
    assert.equal(only(await alerter.alert(failover)).ok, true);
    assert.equal(srv.received[0]?.user, 'vigil');
    assert.deepEqual(srv.received[0]?.rcpt, ['ops@example.com']);
    await alerter.close();
  });

  it('a wrong password fails the channel, and no form of it reaches the result or the log', async () => {
    const srv = await smtpServer({ login: { user: 'vigil', pass: 'right-password' } });
    cleanups.push(srv.close);
    const pass = 'Wr0ng-pa55word';
    const logged: Record<string, unknown>[] = [];
    const alerter = createAlerter(
      config({ email: email(srv.port, { user: 'vigil' }) }),
      { smtpPassword: pass },
      { clusterName: 'prod', log: (e) => logged.push(e) },
    );
    const r = only(await alerter.alert(failover));
    assert.equal(r.ok, false);
    assert.match(r.error ?? '', /SMTP 127\.0\.0\.1:\d+: .*smtpPassword/);
    const everything = JSON.stringify({ r, logged });
    for (const form of [pass, Buffer.from(pass).toString('base64'), Buffer.from(`\0vigil\0${pass}`).toString('base64')]) {
      assert.ok(!everything.includes(form), `leaked ${form}: ${everything}`);
    }
    assert.ok(everything.includes('[redacted]'), 'the relay echoed the password; it should show as redacted');
    assert.equal(srv.received.length, 0);
    await alerter.close();
  });

  it('a login without smtpPassword in the secrets says so and sends nothing', async () => {
    const srv = await smtpServer({ login: { user: 'vigil', pass: 'x' } });
    cleanups.push(srv.close);
    const alerter = createAlerter(config({ email: email(srv.port, { user: 'vigil' }) }), {});
    const r = only(await alerter.alert(failover));
    assert.equal(r.ok, false);
    assert.match(r.error ?? '', /no smtpPassword/);
    assert.equal(srv.received.length, 0);
  });

  it('STARTTLS: opportunistic takes a self-signed relay, required refuses it and a relay without STARTTLS', async () => {
    const tlsSrv = await smtpServer({ starttls: true });
    const plainSrv = await smtpServer();
    cleanups.push(tlsSrv.close, plainSrv.close);
    const send = async (port: number, starttls: string) => only(await createAlerter(config({ email: email(port, { starttls }) }), {}).alert(failover));
    assert.equal((await send(tlsSrv.port, 'opportunistic')).ok, true);
    assert.equal(tlsSrv.received[0]?.secure, true, 'opportunistic must encrypt when offered');
    assert.equal((await send(plainSrv.port, 'opportunistic')).ok, true);
    assert.equal(plainSrv.received[0]?.secure, false);
    const selfSigned = await send(tlsSrv.port, 'required');
    assert.equal(selfSigned.ok, false);
    assert.match(selfSigned.error ?? '', /certificate/i);
    const noTls = await send(plainSrv.port, 'required');
    assert.equal(noTls.ok, false);
    assert.match(noTls.error ?? '', /STARTTLS/i);
    // `secure: true` against a relay that starts in plain text.
    const implicit = only(await createAlerter(config({ email: email(plainSrv.port, { secure: true }) }), {}).alert(failover));
    assert.match(implicit.error ?? '', /: TLS: wrong version number; .*use `secure: false`/);
    assert.equal(tlsSrv.received.length + plainSrv.received.length, 2);
  });

  it('an unreachable relay fails fast: a closed port at once, a silent one within its timeout', async () => {
    const port = await closedPort();
    let start = Date.now();
    const refused = only(await createAlerter(config({ email: email(port) }), {}).alert(failover));
    assert.equal(refused.ok, false);
    // Well below the 10 s default deadline: a refused connection is not waited out (bounds loose enough for a loaded machine).
    assert.ok(Date.now() - start < 5000, `took ${Date.now() - start} ms`);
    assert.match(refused.error ?? '', /ECONNREFUSED|refused/i);
    assert.match(refused.error ?? '', /check alerts\.email\.smtp\.host and port/);

    // Accepts the connection and never greets: only the deadline ends it.
    const silent = net.createServer(() => {}).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    cleanups.push(() => new Promise((r) => silent.close(r)));
    const silentPort = (silent.address() as net.AddressInfo).port;
    start = Date.now();
    const r = only(await createAlerter(config({ email: email(silentPort, { timeoutMs: 300 }) }), {}).alert(failover));
    const took = Date.now() - start;
    assert.equal(r.ok, false);
    assert.ok(took >= 250 && took < 5000, `took ${took} ms`); // the 300 ms deadline, not the 10 s default
    assert.match(r.error ?? '', /timed out|within 300 ms|timeout/i);
  });
});

// ---------------------------------------------------------------- webhook

describe('webhook alerts', () => {
  const fast = { retryDelaysMs: [10, 20] };

  it('POSTs { cluster, event } with the bearer token', async () => {
    const rx = await receiver();
    cleanups.push(rx.close);
    const alerter = createAlerter(config({ webhook: { url: rx.url } }), { webhookToken: 'tok-123456' }, { clusterName: 'prod', ...fast });
    const r = only(await alerter.alert(failover));
    assert.equal(r.ok, true);
    assert.equal(r.attempts, 1);
    assert.deepEqual(rx.hits[0]?.body, { cluster: 'prod', event: failover });
    assert.equal(rx.hits[0]?.headers.authorization, 'Bearer tok-123456');
    assert.equal(rx.hits[0]?.headers['content-type'], 'application/json');
    // Without a token, no Authorization header at all.
    await createAlerter(config({ webhook: { url: rx.url } }), {}, fast).alert(failover);
    assert.equal(rx.hits[1]?.headers.authorization, undefined);
  });

  it('retries a 500 and succeeds; does not retry a 400; gives up after 2 retries', async () => {
    const flaky = await receiver([500, 200]);
    const bad = await receiver([400], () => 'unknown field');
    const down = await receiver([503]);
    cleanups.push(flaky.close, bad.close, down.close);
    const send = async (url: string) => only(await createAlerter(config({ webhook: { url } }), {}, fast).alert(failover));

    const ok = await send(flaky.url);
    assert.deepEqual([ok.ok, ok.attempts, flaky.hits.length], [true, 2, 2]);

    const no = await send(bad.url);
    assert.deepEqual([no.ok, no.attempts, bad.hits.length], [false, 1, 1]);
    assert.match(no.error ?? '', /webhook http:\/\/127\.0\.0\.1:\d+\/hooks\/vigil: answered 400: unknown field/);

    const gaveUp = await send(down.url);
    assert.deepEqual([gaveUp.ok, gaveUp.attempts, down.hits.length], [false, 3, 3]);
    assert.match(gaveUp.error ?? '', /answered 503.*after 3 attempts/);
  });

  it('a receiver that never answers costs each attempt its timeout, then fails', async () => {
    const rx = await receiver(['hang']);
    cleanups.push(rx.close);
    const start = Date.now();
    const r = only(await createAlerter(config({ webhook: { url: rx.url, timeoutMs: 200 } }), {}, fast).alert(failover));
    const took = Date.now() - start;
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 3);
    assert.match(r.error ?? '', /no complete answer within 200 ms/);
    assert.ok(took >= 600 && took < 8000, `took ${took} ms`); // three attempts of 200 ms each, not the default deadline
  });

  it('never shows the token, even when the receiver echoes it; a closed port is refused at once', async () => {
    const rx = await receiver([401], (h) => `bad token ${String(h.headers.authorization)}`);
    cleanups.push(rx.close);
    const r = only(await createAlerter(config({ webhook: { url: rx.url } }), { webhookToken: 'very-secret-token' }, fast).alert(failover));
    assert.equal(r.ok, false);
    assert.ok(!JSON.stringify(r).includes('very-secret-token'), r.error);
    assert.match(r.error ?? '', /answered 401.*check webhookToken/);

    const port = await closedPort();
    const refused = only(await createAlerter(config({ webhook: { url: `http://127.0.0.1:${port}/x` } }), {}, fast).alert(failover));
    assert.equal(refused.ok, false);
    assert.match(refused.error ?? '', /connection refused/);
  });
});

// ---------------------------------------------------------------- both, filtering, rate limit

describe('alert()', () => {
  it('reports each channel on its own and never throws when one fails', async () => {
    const srv = await smtpServer();
    const port = await closedPort();
    cleanups.push(srv.close);
    const cfg = config({
      email: { to: 'ops@example.com', from: 'vigil@example.com', smtp: { host: '127.0.0.1', port: srv.port, starttls: 'off' } },
      webhook: { url: `http://127.0.0.1:${port}/x` },
    });
    const results = await createAlerter(cfg, {}, { retryDelaysMs: [] }).alert(failover);
    assert.deepEqual(
      results.map((r) => [r.channel, r.ok]),
      [
        ['email', true],
        ['webhook', false],
      ],
    );
  });

  it('skips event types not in alerts.events, and does nothing without channels', async () => {
    const rx = await receiver();
    cleanups.push(rx.close);
    const alerter = createAlerter(config({ webhook: { url: rx.url }, events: ['failover'] }), {});
    assert.deepEqual(await alerter.alert(ev('node-lost', 'app1')), [{ channel: 'webhook', ok: true, skipped: 'filtered', attempts: 0, ms: 0 }]);
    assert.equal(only(await alerter.alert(failover)).ok, true);
    assert.equal(rx.hits.length, 1);
    // Defaults leave out the routine events.
    const dflt = createAlerter(config({ webhook: { url: rx.url } }), {});
    assert.equal(only(await dflt.alert(ev('activate', 'app2'))).skipped, 'filtered');
    assert.deepEqual(await createAlerter(config({}), {}).alert(failover), []);
  });

  it('holds back repeats of one type and machine, then sends the latest with the count', async () => {
    const rx = await receiver();
    cleanups.push(rx.close);
    const clock = fakeClock();
    const logged: Record<string, unknown>[] = [];
    const alerter = createAlerter(config({ webhook: { url: rx.url } }), {}, { clusterName: 'prod', clock, log: (e) => logged.push(e) });
    const body = (i: number) => rx.hits[i]?.body as { event: VigilEvent; suppressed?: { count: number; since: string } };

    assert.equal(only(await alerter.alert(ev('node-lost', 'app1', 't0'))).ok, true);
    clock.advance(10_000);
    assert.equal(only(await alerter.alert(ev('node-lost', 'app1', 't10'))).skipped, 'rate-limited');
    clock.advance(10_000);
    assert.equal(only(await alerter.alert(ev('node-lost', 'app1', 't20'))).skipped, 'rate-limited');
    // Another machine, or another type, is another kind of alert.
    assert.equal(only(await alerter.alert(ev('node-lost', 'app2', 't20'))).skipped, undefined);
    assert.equal(only(await alerter.alert(ev('node-back', 'app1', 't20'))).skipped, undefined);
    assert.equal(rx.hits.length, 3);

    // The window of the first alert ends: the latest held-back one goes out, with the other held one counted.
    clock.advance(40_000);
    await waitFor(() => rx.hits.length === 4);
    assert.equal(body(3).event.at, 't20');
    assert.deepEqual(body(3).suppressed, { count: 1, since: 't10', windowSeconds: 60 });
    assert.ok(logged.some((l) => l.event === 'alert-held' && l.heldBack === 2));

    // That trailing alert starts a new window; close() sends what it holds rather than drop it.
    clock.advance(5_000);
    assert.equal(only(await alerter.alert(ev('node-lost', 'app1', 't65'))).skipped, 'rate-limited');
    await alerter.close();
    assert.equal(rx.hits.length, 5);
    assert.equal(body(4).event.at, 't65');
    assert.equal(body(4).suppressed, undefined, 'a single held-back event is sent as is');
    assert.equal(clock.pending(), 0);
  });

  it('an event after the window carries the count of those its timer has not sent yet; 0 turns the limit off', async () => {
    const srv = await smtpServer();
    cleanups.push(srv.close);
    const clock = fakeClock();
    const email = { to: 'ops@example.com', from: 'vigil@example.com', smtp: { host: '127.0.0.1', port: srv.port, starttls: 'off' as const } };
    const alerter = createAlerter(config({ email, rateLimitSeconds: 30 }), {}, { clusterName: 'prod', clock });
    await alerter.alert(ev('node-lost', 'app1'));
    await alerter.alert(ev('node-lost', 'app1', 'second'));
    await alerter.alert(ev('node-lost', 'app1', 'third'));
    // Time passes without the timer having run yet (a busy event loop): the next event takes over.
    const now = clock.now();
    clock.now = () => now + 31_000;
    assert.equal(only(await alerter.alert(ev('node-lost', 'app1', 'fourth'))).ok, true);
    assert.equal(srv.received.length, 2);
    assert.equal(srv.received[1]?.mail.subject, '[vigil prod] node-lost: app1 (+2 held back)');
    assert.match(srv.received[1]?.mail.text ?? '', /2 more node-lost event\(s\) for app1 since second were held back/);
    assert.equal((clock as ReturnType<typeof fakeClock>).pending(), 0);

    const unlimited = createAlerter(config({ email, rateLimitSeconds: 0 }), {}, { clock });
    for (let i = 0; i < 3; i++) assert.equal(only(await unlimited.alert(ev('node-lost', 'app1'))).skipped, undefined);
    assert.equal(srv.received.length, 5);
  });
});

// ---------------------------------------------------------------- wording and config

const imported: VigilEvent = {
  seq: 40,
  at: '2026-12-07T12:33:48.000Z',
  type: 'airgap-import',
  node: 'app1',
  message: 'air-gap bundle sequence 7 (12 files) imported on app1 into /var/lib/vigil/app/patches',
  details: { sequence: 7, bundleId: '3f0c', backup: { machine: 'db1', path: '/var/backups/x.dump' }, from: 'admin-pc' },
};
const refusal = (details: Record<string, unknown>, node?: string): VigilEvent => ({
  seq: 41,
  at: '2026-12-07T12:40:00.000Z',
  type: 'airgap-refused',
  ...(node ? { node } : {}),
  message: 'air-gap bundle sequence 1 at /media/usb/b refused [AIRGAP_OLDER]: the bundle is sequence 1, older than the last imported (2)',
  details,
});

describe('air-gap alerts', () => {
  it('every import and every refusal is sent, none held back by the rate limit; both alert by default', async () => {
    const rx = await receiver();
    cleanups.push(rx.close);
    const clock = fakeClock();
    const alerter = createAlerter(config({ webhook: { url: rx.url } }), {}, { clusterName: 'prod', clock });
    for (let i = 0; i < 3; i++) assert.equal(only(await alerter.alert(refusal({ code: 'AIRGAP_OLDER', sequence: 1 }))).skipped, undefined);
    assert.equal(only(await alerter.alert(imported)).skipped, undefined);
    assert.equal(only(await alerter.alert(imported)).skipped, undefined);
    assert.equal(rx.hits.length, 5);
    // Other events keep their limit.
    assert.equal(only(await alerter.alert(ev('node-lost', 'app1'))).skipped, undefined);
    assert.equal(only(await alerter.alert(ev('node-lost', 'app1'))).skipped, 'rate-limited');
    await alerter.close();
    assert.ok(config({}).events.includes('airgap-import') && config({}).events.includes('airgap-refused'));
  });

  it("the alert names the bundle's sequence, the machine and, for a refusal, the code and the message", () => {
    assert.equal(subjectOf('prod', imported), '[vigil prod] airgap-import: sequence 7 on app1');
    const body = bodyOf('prod', imported);
    assert.match(body, /^air-gap bundle sequence 7 \(12 files\) imported on app1/);
    assert.match(body, /\nMachine: {2}app1\n/);
    assert.match(body, /\nBundle: {3}sequence 7\n/);
    assert.match(body, /\nFrom: {5}admin-pc\n/);
    assert.match(body, /vigil airgap status/);
    assert.ok(!/Refusal:/.test(body));
    // Refused on the active machine, with a verified sequence.
    const onNode = refusal({ code: 'AIRGAP_TAMPERED', sequence: 3, sequenceVerified: true, from: 'admin-pc' }, 'app2');
    assert.equal(subjectOf('prod', onNode), '[vigil prod] airgap-refused: sequence 3 on app2 [AIRGAP_TAMPERED]');
    assert.match(bodyOf('prod', onNode), /\nRefusal: {2}AIRGAP_TAMPERED\n/);
    // Refused on the admin's machine before the signature held: the sequence is the manifest's claim.
    const early = refusal({ code: 'AIRGAP_OLDER', sequence: 1, sequenceVerified: false, from: 'admin-pc' });
    assert.equal(subjectOf('prod', early), '[vigil prod] airgap-refused: sequence 1 (unverified) from admin-pc [AIRGAP_OLDER]');
    const eb = bodyOf('prod', early);
    assert.match(eb, /refused \[AIRGAP_OLDER\]: the bundle is sequence 1, older than the last imported \(2\)/);
    assert.match(eb, /\nBundle: {3}sequence 1 \(unverified\)\n/);
    // No manifest to read: still a subject with the code.
    assert.equal(subjectOf('prod', refusal({ code: 'AIRGAP_INCOMPLETE' })), '[vigil prod] airgap-refused: bundle [AIRGAP_INCOMPLETE]');
  });

  it('the leading observer alerts what the admin and the agents record, never its own events (sent when stored)', () => {
    assert.equal(alertOnFollow(imported, true), true);
    assert.equal(alertOnFollow(refusal({ code: 'X' }), true), true);
    assert.equal(alertOnFollow(ev('files-quarantined', 'app1'), true), true);
    assert.equal(alertOnFollow(imported, false), false, 'a follower observer does not');
    for (const t of ['failover', 'switchover', 'fence', 'node-lost', 'maintenance-on', 'request-failed', 'db-leader-released', 'bootstrap'] as const)
      assert.equal(alertOnFollow(ev(t, 'app1'), true), false, t);
  });
});

describe('alert wording and config', () => {
  it('subjects name the machine and epoch when there are any, on one line', () => {
    assert.equal(subjectOf('c', { ...ev('maintenance-on'), message: 'x' }), '[vigil c] maintenance-on');
    assert.equal(subjectOf('c', { ...ev('fence', 'app1'), epoch: 5 }), '[vigil c] fence: app1 (epoch 5)');
    assert.equal(subjectOf('c', { ...ev('switchover', 'app2'), details: { from: 'app1' } }), '[vigil c] switchover: app1 -> app2');
    assert.equal(subjectOf('c', ev('node-lost', 'a\r\nBcc: x@y.z')), '[vigil c] node-lost: a Bcc: x@y.z');
    assert.ok(!bodyOf('c', ev('node-back', 'app1')).includes('Details:'));
  });

  it('alertsSchema: defaults, one address or a list, http(s) URLs only; alertProblems pairs config and secrets', () => {
    const d = alertsSchema.parse(undefined);
    assert.deepEqual(d.events, [
      'failover',
      'switchover',
      'fence',
      'node-lost',
      'node-back',
      'maintenance-on',
      'maintenance-off',
      'request-failed',
      'db-leader-released',
      'airgap-import',
      'airgap-refused',
    ]);
    assert.equal(d.rateLimitSeconds, 60);
    const e = config({ email: { to: 'a@example.com', from: 'v@example.com', smtp: { host: 'mail' } } }).email;
    assert.deepEqual(e, {
      to: ['a@example.com'],
      from: 'v@example.com',
      smtp: { host: 'mail', port: 25, secure: false, starttls: 'opportunistic', timeoutMs: 10000 },
    });
    assert.equal(config({ webhook: { url: 'https://x.example/h' } }).webhook?.timeoutMs, 5000);
    assert.equal(alertsSchema.safeParse({ webhook: { url: 'ftp://x.example/' } }).success, false);
    assert.equal(alertsSchema.safeParse({ events: ['failover', 'nope'] }).success, false);
    assert.equal(alertsSchema.safeParse({ email: { to: [], from: 'v@example.com', smtp: { host: 'm' } } }).success, false);

    // The schema refuses a login without verified TLS to a relay off this machine (M6); a cluster
    // built in code (init) is checked again by alertProblems.
    for (const starttls of ['off', 'opportunistic'] as const) {
      const r = alertsSchema.safeParse({ email: { to: 'a@example.com', from: 'v@example.com', smtp: { host: 'mail', user: 'u', starttls } } });
      assert.equal(r.success, false, starttls);
      assert.deepEqual(r.error?.issues[0]?.path, ['email', 'smtp', 'starttls']);
      assert.match(r.error?.issues[0]?.message ?? '', new RegExp(`\`${starttls}\` would send the SMTP password`));
    }
    const login = (smtp: Record<string, unknown>) => ({ email: { to: 'a@example.com', from: 'v@example.com', smtp: { host: 'mail', user: 'u', ...smtp } } });
    assert.equal(alertsSchema.safeParse(login({ starttls: 'required' })).success, true);
    assert.equal(alertsSchema.safeParse(login({ secure: true, port: 465 })).success, true);
    assert.equal(alertsSchema.safeParse(login({ host: '127.0.0.1', starttls: 'off' })).success, true, 'a relay on loopback');
    assert.equal(alertsSchema.safeParse(login({ host: 'localhost' })).success, true, 'a relay on loopback');

    const unchecked = {
      ...config({}),
      email: {
        to: ['a@example.com'],
        from: 'v@example.com',
        smtp: { host: 'mail', port: 25, secure: false, starttls: 'off' as const, timeoutMs: 1, user: 'u' },
      },
    };
    assert.deepEqual(
      alertProblems(unchecked, {}).map((p) => p.where),
      ['vigil.yaml alerts.email.smtp.user', 'vigil.yaml alerts.email.smtp.starttls'],
    );
    assert.deepEqual(alertProblems(config({}), { smtpPassword: 'p', webhookToken: 't' }).length, 2);
    assert.deepEqual(
      alertProblems(unchecked, { smtpPassword: 'p' }).map((p) => p.where),
      ['vigil.yaml alerts.email.smtp.starttls'],
    );
    assert.deepEqual(alertProblems(config(login({ starttls: 'required' })), { smtpPassword: 'p' }), []);
  });

  it('webhook (M6): a token never over http:// off this machine; no credential in the URL', async () => {
    const plain = config({ webhook: { url: 'http://hooks.example.com/x' } });
    const [p] = alertProblems(plain, { webhookToken: 'tok-123456' }, 'c.yaml', 's.yaml');
    assert.equal(p?.where, 'c.yaml alerts.webhook.url');
    assert.match(p?.message ?? '', /s\.yaml has webhookToken, which would be sent in clear over http:\/\//);
    assert.match(p?.fix ?? '', /https:\/\//);
    assert.ok(!JSON.stringify(p).includes('tok-123456'));
    assert.deepEqual(alertProblems(plain, {}), [], 'http:// without a token is allowed');
    assert.deepEqual(alertProblems(config({ webhook: { url: 'https://hooks.example.com/x' } }), { webhookToken: 't' }), []);
    assert.deepEqual(alertProblems(config({ webhook: { url: 'http://127.0.0.1:9/x' } }), { webhookToken: 't' }), [], 'loopback');

    // The channel itself refuses too (a vigil.yaml edited on the machine), before connecting.
    const r = only(await createAlerter(plain, { webhookToken: 'tok-123456' }).alert(failover));
    assert.equal(r.ok, false);
    assert.match(r.error ?? '', /webhookToken is never sent over http:\/\//);
    assert.ok(!(r.error ?? '').includes('tok-123456'));

    for (const url of [
      'https://user:pw@hooks.example.com/x',
      'https://user@hooks.example.com/x',
      'https://hooks.example.com/x?token=abc',
      'https://hooks.example.com/x?api_key=abc',
      'https://hooks.example.com/x?a=1&sig=abc',
      'https://hooks.example.com/x?password=abc',
    ]) {
      const bad = alertsSchema.safeParse({ webhook: { url } });
      assert.equal(bad.success, false, url);
      assert.deepEqual(bad.error?.issues[0]?.path, ['webhook', 'url'], url);
      assert.match(bad.error?.issues[0]?.message ?? '', /user name or password|looks like a credential/, url);
    }
    assert.equal(alertsSchema.safeParse({ webhook: { url: 'https://hooks.example.com/x?channel=ops&format=json' } }).success, true);
  });
});
