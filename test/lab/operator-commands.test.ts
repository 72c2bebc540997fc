/**
 * The operator's commands against a `pair` lab: status, maintenance (the observer holds still),
 * a planned switchover of both tiers with no lost write, a manual failover, the event history, and
 * the e-mail alerts the observer sends to an SMTP server on the lab's bridge address, the
 * Prometheus metrics of every daemon before and after a failover, and last the dashboard in a real
 * browser while the active machine is killed (it leaves that machine dead: it runs last).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';
import { withRole } from '../../src/config/schema.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findPrimary, labAdminPki, labDown, labKill, labSignal, labStart, labStopUnit, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { mtlsFetch } from '../../src/mtls/mtls.ts';
import { LAB_DIR } from '../../src/lab/paths.ts';
import { UNITS } from '../../src/layout/units.ts';
import { logIn, openDashboard, whenLive } from './dashboard-browser.ts';
import { printJournals } from './journal.ts';
import { HttpProbe } from '../../src/lab/probe.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { BRIDGE_ADDRESS } from '../../src/lab/topology.ts';
import { AckWriter } from '../../src/lab/writer.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';
import { freePort } from '../../src/util/net.ts';
import { parseExposition, promtoolCheckMetrics, sampleValue, type Sample } from '../../src/testing/metrics.ts';

const vigil = async (...args: string[]) => (await promisify(execFile)(process.execPath, ['bin/vigil.js', ...args, '--lab'], { timeout: 120_000 })).stdout;

interface Status {
  active: { node: string; epoch: number } | null;
  maintenance: unknown;
  observerLeader: { host: string } | null;
  machines: { name: string; agent: { active: boolean; ready: boolean } | null }[];
}
const status = async () => JSON.parse(await vigil('status', '--json')) as Status;

let lab: LabHandle;
let probe: HttpProbe;
const mails: { subject: string; text: string }[] = [];
let smtp: SMTPServer;

before(async () => {
  await labDown();
  const port = await freePort();
  lab = await labUp(
    {
      topology: 'pair',
      alerts: { email: { to: 'ops@lab.test', from: 'vigil@lab.test', smtp: { host: BRIDGE_ADDRESS, port, starttls: 'off' } }, rateLimitSeconds: 0 },
    },
    (l) => console.log(`# lab: ${l}`),
  );
  // The sink listens on the bridge address, which exists only once the lab is up.
  smtp = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, _s, cb) {
      simpleParser(stream).then((m) => {
        mails.push({ subject: m.subject ?? '', text: m.text ?? '' });
        cb();
      }, cb);
    },
  });
  await new Promise<void>((resolve) => smtp.listen(port, BRIDGE_ADDRESS, resolve));
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}/health`);
  probe.start();
});

after(async () => {
  await probe?.stop();
  await new Promise<void>((r) => (smtp ? smtp.close(() => r()) : r()));
  await labDown();
});

test('status shows one active machine, the ready standby and the observer leader', async () => {
  await labSettled(lab);
  const s = await status();
  assert.ok(s.active, 'an active node');
  assert.equal(s.observerLeader?.host, 'observer');
  const apps = s.machines.filter((m) => m.name.startsWith('app'));
  assert.deepEqual(
    apps.filter((m) => m.agent?.active).map((m) => m.name),
    [s.active.node],
  );
  assert.ok(apps.every((m) => m.agent?.active || m.agent?.ready));
  const text = await vigil('status');
  assert.match(text, new RegExp(`active app node: ${s.active.node} at epoch ${s.active.epoch}`));
});

interface MetricsTarget {
  machine: string;
  daemon: 'agent' | 'observer' | 'haproxy' | 'patroni';
  url: string;
}
let targets: MetricsTarget[] = [];
/** Every Vigil daemon's samples, by `machine/daemon`, as scraped before the failover below. */
let baseline: Map<string, Sample[]> | undefined;

/** One scrape; an https URL (Patroni's REST API) is asked trusting the lab's cluster CA. */
const scrape = async (url: string): Promise<string> => {
  if (url.startsWith('https:')) {
    const r = await mtlsFetch(url, { ...(await labAdminPki()), timeoutMs: 5000 });
    assert.equal(r.status, 200, url);
    return r.text;
  }
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200, url);
  return r.text();
};
const scrapeVigil = async (): Promise<Map<string, Sample[]>> =>
  new Map(
    await Promise.all(
      targets
        .filter((t) => t.daemon === 'agent' || t.daemon === 'observer')
        .map(async (t) => [`${t.machine}/${t.daemon}`, parseExposition(await scrape(t.url))] as const),
    ),
  );

test('every daemon serves /metrics: lab status --json lists the URLs, promtool checks them; HAProxy and Patroni export theirs', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/vigil.js', 'lab', 'status', '--json'], { timeout: 60_000 });
  targets = (JSON.parse(stdout) as { metrics: MetricsTarget[] }).metrics;
  // pair: the observer machine runs the observer and HAProxy (no agent); app1 and app2 an agent and Patroni.
  assert.deepEqual(targets.map((t) => `${t.machine}/${t.daemon}`).sort(), [
    'app1/agent',
    'app1/patroni',
    'app2/agent',
    'app2/patroni',
    'observer/haproxy',
    'observer/observer',
  ]);
  for (const t of targets) {
    const text = await scrape(t.url);
    if (t.daemon === 'haproxy') assert.match(text, /^haproxy_server_status\{proxy="app",server="app1",state="MAINT"\} [01]$/m, t.url);
    else if (t.daemon === 'patroni') assert.match(text, /^patroni_postgres_running\{[^}]*\} 1$/m, t.url);
    else assert.deepEqual(await promtoolCheckMetrics(text), [], `promtool check metrics on ${t.url}`);
  }
  baseline = await scrapeVigil();
  assert.equal(sampleValue(baseline.get('observer/observer')!, 'vigil_observer_is_leader'), 1);
});

test('in maintenance the observer takes no action; off again, it fails over', async () => {
  const before = (await status()).active!;
  await vigil('maintenance', 'on', '--reason', 'upgrade');
  assert.ok((await status()).maintenance);
  await labSignal(before.node, 'app', 'SIGKILL');
  await sleep(6000); // three times the failover delay
  assert.deepEqual((await status()).active, before, 'no failover during maintenance');
  await vigil('maintenance', 'off');
  await waitFor(
    'a failover after maintenance',
    async () => {
      const a = (await status()).active;
      return a && a.node !== before.node ? a : undefined;
    },
    30_000,
    500,
  );
  await waitFor(
    'mail about maintenance and the failover',
    async () => {
      const subjects = mails.map((m) => m.subject).join('\n');
      return /maintenance-on/.test(subjects) && /maintenance-off/.test(subjects) && /failover/.test(subjects) ? true : undefined;
    },
    30_000,
    500,
  );
  await metricsMoved(before, (await status()).active!);
});

/** After the failover: the observer counted and timed it, its epoch and every agent's went up, the new node's agent says active. */
async function metricsMoved(old: { node: string; epoch: number }, now: { node: string; epoch: number }): Promise<void> {
  assert.ok(baseline, 'the metrics test ran first');
  const o0 = baseline.get('observer/observer')!;
  const counted = { kind: 'failover', result: 'success' };
  const started = performance.now();
  const after = await waitFor(
    'vigil_failovers_total{kind="failover",result="success"} to count the failover',
    async () => {
      const m = await scrapeVigil();
      return sampleValue(m.get('observer/observer')!, 'vigil_failovers_total', counted)! > sampleValue(o0, 'vigil_failovers_total', counted)! ? m : undefined;
    },
    20_000,
    500,
  ).catch(async (err: Error) => {
    const o = (await scrapeVigil()).get('observer/observer')!;
    return assert.fail(
      `${err.message}: ${o
        .filter((x) => x.name === 'vigil_failovers_total')
        .map((x) => `${JSON.stringify(x.labels)} ${x.value}`)
        .join('; ')}`,
    );
  });
  console.log(`# metrics: the failover counted ${Math.round(performance.now() - started)} ms after the test looked`);
  const o1 = after.get('observer/observer')!;
  const moved = (name: string, labels: Record<string, string>) => (sampleValue(o1, name, labels) ?? 0) - (sampleValue(o0, name, labels) ?? 0);
  assert.equal(moved('vigil_failover_duration_seconds_count', { kind: 'failover' }), 1, 'one failover in the duration histogram');
  assert.ok(moved('vigil_failover_duration_seconds_sum', { kind: 'failover' }) > 0);
  for (const phase of ['detect', 'fence', 'app_start', 'proxy_switch'])
    assert.equal(moved('vigil_failover_phase_duration_seconds_count', { kind: 'failover', phase }), 1, `phase ${phase} observed`);
  assert.ok(sampleValue(o1, 'vigil_cluster_epoch')! > sampleValue(o0, 'vigil_cluster_epoch')!, 'the epoch gauge went up');
  assert.equal(sampleValue(o1, 'vigil_cluster_epoch'), now.epoch);
  assert.equal(sampleValue(o1, 'vigil_node_role', { node: now.node, state: 'active' }), 1);
  assert.ok(sampleValue(o1, 'vigil_last_failover_timestamp_seconds', { kind: 'failover' })! > 0);
  const agent = after.get(`${now.node}/agent`)!;
  assert.equal(sampleValue(agent, 'vigil_agent_role', { state: 'active' }), 1, `${now.node}'s agent says active`);
  assert.equal(sampleValue(agent, 'vigil_agent_epoch'), now.epoch);
  assert.equal(sampleValue(after.get(`${old.node}/agent`)!, 'vigil_agent_role', { state: 'active' }), 0, `${old.node}'s agent no longer active`);
}

/** One `vigil switchover`: the app moves, and the database primary ends on the app's new machine. */
async function switchover(): Promise<{ from: string; to: string; primaryBefore: string | undefined; startedMs: number }> {
  await labSettled(lab);
  const from = (await status()).active!.node;
  const primaryBefore = (await findPrimary(lab.cluster))?.name;
  const startedMs = Date.now();
  const out = await vigil('switchover');
  assert.match(out, /done: app[12] is active at epoch/);
  const to = (await status()).active!.node;
  assert.notEqual(to, from);
  assert.equal((await findPrimary(lab.cluster))?.name, to, 'the database primary moved with the application');
  return { from, to, primaryBefore, startedMs };
}

test('a switchover moves both tiers with no lost write; the stopped primary is released at once', async () => {
  await labSettled(lab);
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  const writer = new AckWriter({
    host: proxy.address,
    port: lab.cluster.proxy.postgresPort,
    user: lab.cluster.database.appUser,
    password: lab.secrets.appDbPassword,
    database: lab.cluster.database.appDatabase,
    intervalMs: 20,
  });
  await writer.prepare();
  writer.start();
  try {
    await waitFor('writes', async () => (writer.acked.length > 20 ? true : undefined), 20_000);
    // After the manual failover of an earlier test the primary may sit on the standby: the first
    // switchover then moves only the app (onto the primary), and a second one moves both.
    let sw = await switchover();
    if (sw.primaryBefore === sw.to) {
      console.log(`# the database primary was already on ${sw.to}: a second switchover moves it`);
      sw = await switchover();
    }
    assert.equal(sw.primaryBefore, sw.from, 'this switchover moved the database primary');
    // The old primary's leader key is released by the observer as soon as its postmaster has
    // exited, not by Patroni's stop loop a second later (db-release.ts, stoppedPrimary).
    const released = (await vigil('events', '-n', '30', '--json'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { at: string; type: string; message: string })
      .filter((e) => e.type === 'db-leader-released' && Date.parse(e.at) >= sw.startedMs - 1000);
    if (!released.some((e) => /answers as primary \(stopping\) and its PostgreSQL port refuses connections/.test(e.message))) {
      const units: [string, string][] = [
        ['observer', 'vigil-observer.service'],
        [sw.from, 'vigil-patroni.service'],
        [sw.to, 'vigil-patroni.service'],
      ];
      await printJournals(units, sw.startedMs - 1000, Date.now());
      assert.fail(`no db-leader-released event for the stopped primary ${sw.from}: ${JSON.stringify(released)}`);
    }
    const count = writer.acked.length;
    await waitFor('writes after the switchover', async () => (writer.acked.length > count + 20 ? true : undefined), 30_000);
  } finally {
    await writer.stop();
  }
  assert.deepEqual(await writer.missing(), []);
});

test('a manual failover makes the named machine active; a bad name is refused', async () => {
  await labSettled(lab);
  const before = (await status()).active!;
  const to = before.node === 'app1' ? 'app2' : 'app1';
  assert.match(await vigil('failover', '--to', to), new RegExp(`done: ${to} is active`));
  await assert.rejects(vigil('failover', '--to', 'db9'), /not an app machine/);
});

test('events tell the story, oldest first', async () => {
  const out = await vigil('events', '-n', '100');
  for (const type of ['bootstrap', 'maintenance-on', 'maintenance-off', 'failover', 'switchover', 'fence'])
    assert.match(out, new RegExp(`\\s${type}\\s`), type);
});

test('the dashboard in a browser: log in; a viewer cannot act; Doctor shows the kept report and runs from the page; a switchover from Actions, and a stale form refused; see the active machine, kill it, the page shows the new one without a reload, the Timeline shows the failover with its phases and takes an acknowledgement; no console error or CSP violation; reconnecting while the observer is away', async () => {
  await labSettled(lab);
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/vigil.js', 'lab', 'status', '--json'], { timeout: 60_000 });
  const j = JSON.parse(stdout) as {
    dashboard: string;
    dashboardLogin: { user: string; passwordFile: string };
    dashboardViewer: { user: string; passwordFile: string } | null;
  };
  const observer = withRole(lab.cluster, 'observer')[0]!;
  assert.equal(j.dashboard, `https://${observer.address}:${lab.cluster.dashboard.port}/`);
  const password = (await readFile(j.dashboardLogin.passwordFile, 'utf8')).trim();
  const ca = await readFile(join(LAB_DIR, 'pki', 'ca.pem'), 'utf8');
  const wall0 = Date.now();
  const d = await openDashboard(j.dashboard, ca, j.dashboardLogin.user, password);
  const tile = d.page.locator('[data-tile="active"] .value');
  const appCell = (node: string) => d.page.locator(`tr[data-machine="${node}"] td`).nth(3);
  try {
    // Doctor: `vigil doctor` keeps its report, which the page shows machine by machine; then a run
    // from the page (the observer's view of the cluster), followed to its report and its event.
    const cli = await vigil('doctor').catch((err: { stdout?: string; message: string }) => err.stdout ?? err.message);
    console.log(`# doctor (CLI): ${cli.trim().split('\n').at(-1)}`);
    await d.page.getByRole('link', { name: 'Doctor' }).click();
    await d.page.waitForURL(/\/doctor$/);
    await whenLive(d);
    const cliReport = d.page.locator('section.report[data-source="cli"]');
    await cliReport.locator('h2', { hasText: /^Every machine \(vigil doctor\): \d+ failures?, \d+ warnings?$/ }).waitFor({ timeout: 60_000 });
    for (const m of lab.cluster.machines) await cliReport.locator(`section.part[data-part="${m.name}"] .checks li`).first().waitFor({ timeout: 10_000 });
    await d.page.getByRole('button', { name: 'Run doctor from the observer' }).click();
    await d.page.waitForURL(/\/doctor$/);
    await whenLive(d);
    const pageReport = d.page.locator('section.report[data-source="dashboard"]');
    await pageReport.locator('h2', { hasText: /^From the observer \(run from this page\): 0 failures, \d+ warnings?$/ }).waitFor({ timeout: 120_000 });
    assert.match(await pageReport.locator('.when').innerText(), new RegExp(`run by ${j.dashboardLogin.user} \\(dashboard on ${observer.name}\\)`));
    for (const check of ['etcd', 'patroni', 'cluster-state'])
      await pageReport.locator('section.part[data-part="cluster"] .checks li.ok', { hasText: `${check}: ok` }).waitFor({ timeout: 10_000 });
    await pageReport.locator('section.part[data-part="app1"] .checks li.skipped', { hasText: 'reachable: not run' }).waitFor({ timeout: 10_000 });
    console.log(`# doctor (page): ${(await pageReport.locator('h2').innerText()).trim()}`);
    assert.match(await vigil('events', '-n', '10'), /doctor-run .*doctor run from the dashboard by/);
    assert.deepEqual(d.problems, [], 'no console error, no CSP violation, no page error on the Doctor page');

    // A viewer sees and may not act: its role in the header, the Actions forms and Doctor's button
    // disabled, and a POST sent anyway refused (403) and audited, with nothing changed.
    {
      const v = j.dashboardViewer;
      assert.ok(v, 'lab status --json names the viewer');
      const vctx = await d.browser.newContext();
      try {
        const vp = await vctx.newPage();
        vp.setDefaultTimeout(60_000);
        await logIn(vp, j.dashboard, v.user, (await readFile(v.passwordFile, 'utf8')).trim());
        await vp.locator('#user', { hasText: `${v.user} (viewer)` }).waitFor();
        await vp.goto(new URL('/actions', j.dashboard).href);
        await vp.locator('form[data-action="switchover"] .note', { hasText: 'Your role may not act' }).waitFor();
        assert.equal(await vp.locator('form[data-action="switchover"] button').isDisabled(), true, "the viewer's switchover button is disabled");
        await vp.goto(new URL('/doctor', j.dashboard).href);
        await vp.locator('#doctor-state', { hasText: 'the viewer role may not run doctor' }).waitFor();
        assert.equal(await vp.getByRole('button', { name: 'Run doctor from the observer' }).isDisabled(), true);
        const before_ = (await status()).active;
        const refused = await vp.evaluate(
          async () =>
            (
              await fetch('/actions', {
                method: 'POST',
                headers: { 'content-type': 'application/x-www-form-urlencoded' },
                body: 'kind=maintenance-on&confirm=maintenance&reason=a+viewer+tries',
              })
            ).status,
        );
        assert.equal(refused, 403);
        assert.match(await vigil('events', '-n', '10'), /action-refused .*by viewer \(viewer\)/);
        const after_ = await status();
        assert.equal(after_.maintenance, null, "the viewer's maintenance did not happen");
        assert.deepEqual(after_.active, before_);
        console.log('# viewer: sees the pages, forms and doctor disabled, a forced POST refused (403) and audited');
      } finally {
        await vctx.close();
      }
    }

    // Actions: a switchover from the page, confirmed by typing the machine's name, seen through to
    // its end on the Timeline. Then a form drawn before the cluster moved is refused.
    const a0 = (await status()).active!;
    const target = a0.node === 'app1' ? 'app2' : 'app1';
    await d.page.getByRole('link', { name: 'Actions' }).click();
    await d.page.waitForURL(/\/actions$/);
    await whenLive(d);
    const sw = d.page.locator('form[data-action="switchover"]');
    await sw.locator('select[name="to"]').selectOption(target);
    await sw.getByLabel(`Type ${target} to confirm`).fill(target);
    await sw.getByLabel('Reason').fill('lab test: switchover from the dashboard');
    assert.equal(await sw.locator('.command code').innerText(), `vigil switchover --to ${target}`);
    await sw.getByRole('button', { name: 'Switch over' }).click();
    await d.page.waitForURL(/\/timeline$/);
    await whenLive(d);
    const swDone = new RegExp(`^Switchover ${a0.node} → ${target} \\(epoch ${a0.epoch + 1}, \\d+\\.\\d s\\)`);
    await d.page.locator('article.incident', { hasText: swDone }).first().waitFor({ timeout: 120_000 });
    assert.equal((await status()).active!.node, target);
    console.log(`# actions: switchover ${a0.node} → ${target} from the page, done at epoch ${a0.epoch + 1}`);
    await labSettled(lab);
    await d.page.getByRole('link', { name: 'Actions' }).click();
    await d.page.waitForURL(/\/actions$/);
    await whenLive(d);
    const fo = d.page.locator('form[data-action="failover"]');
    await fo.locator('select[name="to"]').waitFor();
    await vigil('failover', '--to', a0.node); // the cluster moves behind the page's back
    await d.page.locator('#moved', { hasText: 'The cluster has moved' }).waitFor({ timeout: 60_000 });
    await fo.locator('select[name="to"]').selectOption(a0.node);
    await fo.getByLabel(`Type ${a0.node} to confirm`).fill(a0.node);
    await fo.getByLabel('Reason').fill('lab test: decided before the cluster moved');
    await fo.getByRole('button', { name: 'Fail over' }).click();
    await d.page
      .locator('#refusal', { hasText: `decided at epoch ${a0.epoch + 1}; now ${a0.node} is active at epoch ${a0.epoch + 2}` })
      .waitFor({ timeout: 60_000 });
    assert.match(await vigil('events', '-n', '10'), /action-refused/);
    // Chromium logs the refusal's status as a console error: that one, and nothing else so far.
    assert.deepEqual(d.problems.splice(0), ['console: Failed to load resource: the server responded with a status of 409 (Conflict)']);
    assert.equal((await status()).active!.epoch, a0.epoch + 2, 'the refused form moved nothing');
    await labSettled(lab);
    await d.page.goto(j.dashboard);
    await whenLive(d);

    const before = (await status()).active!;
    const other = before.node === 'app1' ? 'app2' : 'app1';
    await tile.filter({ hasText: `${before.node} at epoch ${before.epoch}` }).waitFor({ timeout: 30_000 });
    await appCell(before.node)
      .filter({ hasText: /^ACTIVE$/ })
      .waitFor({ timeout: 30_000 });
    // A mark in the page's own window: still there afterwards means the page was never reloaded.
    await d.page.evaluate(() => Object.assign(window, { vigilTestMark: 'before the kill' }));
    // Earlier tests move the app alone sometimes: the killed machine holds the primary or not.
    const primaryBefore = (await findPrimary(lab.cluster))?.name;
    await labKill(before.node);
    console.log(`# dashboard: killed ${before.node} (active at epoch ${before.epoch}); waiting for the page to show ${other}`);
    await tile.filter({ hasText: new RegExp(`^${other} at epoch \\d+$`) }).waitFor({ timeout: 120_000 });
    await appCell(other)
      .filter({ hasText: /^ACTIVE$/ })
      .waitFor({ timeout: 60_000 });
    await appCell(before.node).filter({ hasText: 'UNREACHABLE' }).waitFor({ timeout: 60_000 });
    assert.equal(await d.page.evaluate(() => (window as unknown as { vigilTestMark?: string }).vigilTestMark), 'before the kill', 'no reload');
    const now = (await status()).active!;
    assert.equal(now.node, other);
    assert.equal(await tile.innerText(), `${other} at epoch ${now.epoch}`);
    assert.equal(await d.page.locator('#conn').innerText(), 'live');
    assert.deepEqual(d.problems, [], 'no console error, no CSP violation, no page error');

    // The Timeline, through the header's link: the failover is one incident with its phases (once
    // the observer's failover-done event is in), the database's promotion merged in when the
    // killed machine held the primary too, and an admin acknowledges it. Then back to "Now".
    const tl = d.page;
    {
      await tl.getByRole('link', { name: 'Timeline' }).click();
      await tl.waitForURL(/\/timeline$/);
      await whenLive(d);
      const incident = tl.locator('article.incident', { hasText: new RegExp(`^Failover ${before.node} → ${other} \\(epoch ${now.epoch}, \\d+\\.\\d s\\)`) });
      await incident.first().waitFor({ timeout: 120_000 });
      const card = incident.first();
      console.log(`# timeline: ${(await card.innerText()).replace(/\s+/g, ' ').slice(0, 400)}`);
      for (const phase of ['detect', 'fence', 'app_start']) await card.locator(`.phases li[data-phase="${phase}"]`).waitFor({ timeout: 10_000 });
      await card.locator('summary').click();
      for (const type of ['failover', 'fence', 'activate', 'failover-done'])
        assert.ok((await card.locator(`tr[data-type="${type}"]`).count()) >= 1, `the incident lists its ${type} event`);
      if (primaryBefore === before.node) await card.locator('tr[data-type="db-promoted"]').first().waitFor({ timeout: 60_000 });
      else console.log(`# timeline: the primary was on ${primaryBefore ?? 'no machine'}, not the killed one: no promotion to show`);
      await card.locator('input[name="comment"]').fill('seen in the lab test');
      await card.getByRole('button', { name: 'Acknowledge' }).click();
      await tl
        .locator('article.incident .acks li', { hasText: `acknowledged by ${j.dashboardLogin.user}` })
        .filter({ hasText: 'seen in the lab test' })
        .waitFor({ timeout: 60_000 });
      assert.match(await vigil('events', '-n', '20'), /incident-acknowledged/);
      await tl.getByRole('link', { name: 'Now' }).click();
      await whenLive(d);
    }
    assert.deepEqual(d.problems, [], 'no console error, no CSP violation, no page error on the Timeline');

    // The observer goes away: the page says it is reconnecting; back, the session (kept in the observer's memory) is over: to the login page.
    await labStopUnit(observer.name, 'observer');
    await d.page.locator('#conn.reconnecting').waitFor({ timeout: 60_000 });
    assert.equal(await d.page.locator('#conn').innerText(), 'reconnecting…');
    await labStart(observer.name, 'observer');
    await d.page.waitForURL(/\/login$/, { timeout: 120_000 });
    // The stream cut when it stopped, the browser could not connect while it was away, then got 401: those and nothing else.
    const other_ = d.problems.filter((p) => !/ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_REFUSED|status of 401/.test(p));
    assert.deepEqual(other_, [], 'only the failed reconnects while the observer was away');
  } catch (err) {
    console.log(
      `# dashboard page: ${await d.page
        .locator('header')
        .innerText()
        .catch(() => '?')} | ${await d.page
        .locator('#tiles')
        .innerText()
        .catch(() => '?')}`,
    );
    console.log(`# browser problems: ${d.problems.join(' | ') || 'none'}`);
    console.log(`# vigil status: ${await vigil('status', '--json').catch((e: Error) => e.message)}`);
    await printJournals(
      [
        [observer.name, UNITS.observer],
        ['app1', UNITS.agent],
        ['app2', UNITS.agent],
      ],
      wall0,
      Date.now(),
    );
    throw err;
  } finally {
    await d.close();
  }
});
