/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core, as the browser
 * test does: test/lab/dashboard-browser.ts) against a `pair` lab, with the pages' own clocks:
 *
 * 1. First paint of each page the header links to (Now, Timeline, Actions, and any page added
 *    later): a new tab per sample, from navigation start to the first contentful paint (the
 *    Performance API's `first-contentful-paint`) and to "live", the first server snapshot drawn
 *    (the header's user name is filled in the same task as the data; a MutationObserver installed
 *    before the page's script notes performance.now(), and the next animation frame's too). Only
 *    that tab is open, so the observer's reading loop starts cold for each sample, as for the
 *    first administrator who opens the page.
 * 2. Update latency after a failover, "event in etcd to pixels": the active app machine is killed
 *    (`labKill`) while a Now page and a Timeline page are open (each in its own browser context);
 *    from the moment this script's etcd watch receives the new active record to the moment the
 *    Now page's active tile shows the new machine (the MutationObserver's wall time,
 *    performance.timeOrigin + performance.now(), same host clock), and from the watch's arrival
 *    of the `failover` event to the Timeline's incident "Failover old → new (epoch N, …)". The
 *    baseline, in the same rounds: the same reading the page's feed makes (`clusterStatus`, what
 *    `vigil status --json` prints), in a tight loop in this process, from the record's arrival
 *    to the first answer naming the new machine. The killed machine is revived between rounds.
 * 3. The observer's CPU share and RSS (its main process, from /proc, as bench/footprint.ts):
 *    with no page open, one Now page, ten Now pages and ten Timeline pages, each page in its own
 *    browser context with its own login, each window the same length after the same settling.
 * 4. With `--screenshot PATH`, a PNG of the Now page of the healthy cluster at 1280x800, once
 *    live and every tile is ok (docs/dashboard-now.png).
 *
 *   VIGIL_LAB_ID=2 npx tsx bench/dashboard.ts [--rounds 3] [--samples 5] [--pages 10]
 *     [--settle-ms 20000] [--window-ms 30000] [--screenshot docs/dashboard-now.png]
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { withRole } from '../src/config/schema.ts';
import { labDashboard, labDown, labKill, labRevive, labUp, type LabHandle } from '../src/lab/lab.ts';
import { LAB_DIR } from '../src/lab/paths.ts';
import { listProcesses } from '../src/lab/procs.ts';
import { labSettled } from '../src/lab/settle.ts';
import { LAB_OPS } from '../src/lab/target.ts';
import { UNITS } from '../src/layout/units.ts';
import { openOps, type OpsContext } from '../src/ops/context.ts';
import { clusterStatus } from '../src/ops/status.ts';
import { percentile } from '../src/sync/protocol.ts';
import { run, sleep, waitFor } from '../src/util/exec.ts';
import { launchChromium, logIn } from '../test/lab/dashboard-browser.ts';
import { printJournals } from '../test/lab/journal.ts';
import { usage } from './proc-usage.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    samples: { type: 'string', default: '5' },
    pages: { type: 'string', default: '10' },
    'settle-ms': { type: 'string', default: '20000' },
    'window-ms': { type: 'string', default: '30000' },
    screenshot: { type: 'string' },
  },
});
const positive = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} ${v}: a whole number of 1 or more`);
  return n;
};
const rounds = positive('rounds', values.rounds);
const samples = positive('samples', values.samples);
const manyPages = positive('pages', values.pages);
const settleMs = positive('settle-ms', values['settle-ms']);
const windowMs = positive('window-ms', values['window-ms']);

const t00 = performance.now();
const progress = (line: string) => console.log(`[${((performance.now() - t00) / 1000).toFixed(0).padStart(4)} s] ${line}`);
const med = (xs: number[]) => percentile(xs, 50);
const ms = (x: number) => `${x.toFixed(0)}`;
/** "median | worst | each" in milliseconds. */
const row = (xs: number[]) => (xs.length ? `${ms(med(xs))} | ${ms(Math.max(...xs))} | ${xs.map(ms).join(', ')}` : 'none | | ');

/** What the init script keeps in each page (window.__vigilBench). */
interface Marks {
  /** When the first snapshot was drawn, and at the next animation frame (the marks `vigil-live` and `vigil-live-frame`, ms from navigation start). */
  live?: number;
  liveFrame?: number;
  /** Each text the active tile showed, with the wall time (timeOrigin + now) it appeared, and at the next frame. */
  tiles: { text: string; at: number; frameAt?: number }[];
  /** Each incident title, when it first appeared. */
  titles: Record<string, { at: number; frameAt?: number }>;
  visibility: string;
}

/**
 * Installed in every page before its own script: a MutationObserver on the whole document that
 * notes when data first arrives and when the active tile and the incident titles change (shape:
 * Marks). It runs through the DevTools protocol, so the page's Content-Security-Policy does not
 * apply to it. A string, not a function: tsx's transform (keepNames) would wrap the inner
 * functions in a helper that the page does not have.
 */
const INSTRUMENT = `(() => {
  const b = { tiles: [], titles: {}, visibility: document.visibilityState };
  window.__vigilBench = b;
  const wall = () => performance.timeOrigin + performance.now();
  const check = () => {
    if (b.live === undefined && document.getElementById('user')?.textContent) {
      b.live = performance.mark('vigil-live').startTime;
      requestAnimationFrame(() => (b.liveFrame = performance.mark('vigil-live-frame').startTime));
    }
    const tile = document.querySelector('[data-tile="active"] .value')?.textContent;
    if (tile && tile !== b.tiles.at(-1)?.text) {
      const e = { text: tile, at: wall() };
      b.tiles.push(e);
      requestAnimationFrame(() => (e.frameAt = wall()));
    }
    for (const h of document.querySelectorAll('article.incident > h2')) {
      const t = h.textContent ?? '';
      if (t && !(t in b.titles)) {
        const e = { at: wall() };
        b.titles[t] = e;
        requestAnimationFrame(() => (e.frameAt = wall()));
      }
    }
    b.visibility = document.visibilityState;
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true, characterData: true });
})();`;

const marks = (p: Page) => p.evaluate(() => (window as unknown as { __vigilBench: Marks }).__vigilBench);

let browser: Browser | undefined;
let ops: OpsContext | undefined;
let cleaning: Promise<void> | undefined;
const contexts: BrowserContext[] = [];
/** Problems the pages reported (console errors, CSP violations, page errors): printed at the end. */
const problems: string[] = [];

/** The browser, the etcd connection and the lab, once, whether the run ended, failed or was interrupted. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await browser?.close().catch(() => {});
    await ops?.close().catch(() => {});
    progress('lab down');
    await labDown();
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    console.error(`${sig}: tearing down the browser and the lab`);
    void cleanup().finally(() => process.exit(130));
  });

interface Login {
  url: string;
  user: string;
  password: string;
}

/** A browser context of its own (its own cookie jar), logged in, its pages instrumented; at `path`, live. */
async function loggedIn(login: Login, path = '/', viewport?: { width: number; height: number }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser!.newContext(viewport ? { viewport } : {});
  contexts.push(context);
  await context.addInitScript({ content: INSTRUMENT });
  const page = await context.newPage();
  watchProblems(page);
  page.setDefaultTimeout(60_000);
  await logIn(page, login.url, login.user, login.password);
  await waitLive(page); // the "Now" page the login leads to
  if (path !== '/') {
    await page.goto(new URL(path, login.url).href);
    await waitLive(page);
  }
  return { context, page };
}

function watchProblems(page: Page): void {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${page.url()}: console: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${page.url()}: page error: ${err.message}`));
}

/** Until the page drew its first snapshot (and its next frame came). */
async function waitLive(page: Page): Promise<void> {
  await page.locator('#conn.live').waitFor({ timeout: 60_000 });
  await page.waitForFunction(() => (window as unknown as { __vigilBench?: Marks }).__vigilBench?.liveFrame !== undefined, undefined, { timeout: 60_000 });
}

/** The page still live and its data fresh (the header's age not marked stale). */
async function stillLive(page: Page, what: string): Promise<void> {
  const conn = await page.locator('#conn').getAttribute('class');
  const age = await page.locator('#age').getAttribute('class');
  if (!conn?.includes('live') || age?.includes('stale'))
    throw new Error(`${what}: the page is not live any more (${conn}; ${await page.locator('#age').innerText()})`);
}

async function screenshot(login: Login, path: string): Promise<void> {
  const { context, page } = await loggedIn(login, '/', { width: 1280, height: 800 });
  // Healthy: every tile ok (the replica streaming, file sync in sync), within a generous deadline.
  await waitFor(
    'every tile of the Now page to be ok',
    async () => ((await page.locator('#tiles .tile').count()) > 0 && (await page.locator('#tiles .tile:not(.ok)').count()) === 0 ? true : undefined),
    180_000,
    500,
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n  tiles: ${(await page.locator('#tiles').innerText()).replace(/\s+/g, ' ')}`);
  });
  await sleep(1500); // the age line says "data 0 s old" or "1 s old", not the first "connecting"
  await page.screenshot({ path, type: 'png' });
  progress(`screenshot: ${path}, ${((await stat(path)).size / 1024).toFixed(0)} KiB`);
  await context.close();
}

interface Paint {
  fcp: number;
  live: number;
  liveFrame: number;
}

/** Each page the header links to, `samples` times, each in a new tab of one logged-in context, alone. */
async function firstPaints(login: Login): Promise<Map<string, Paint[]>> {
  const { context, page } = await loggedIn(login);
  const links = await page.locator('header nav a').evaluateAll((as) => as.map((a) => [a.textContent ?? '', (a as HTMLAnchorElement).pathname]));
  await page.close();
  await sleep(2000); // the feed stops when its last page goes
  const out = new Map<string, Paint[]>();
  for (const [name, path] of links) {
    const got: Paint[] = [];
    for (let i = 0; i < samples; i++) {
      const p = await context.newPage();
      watchProblems(p);
      await p.goto(new URL(path!, login.url).href);
      await waitLive(p);
      const fcp = await p.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
      const m = await marks(p);
      if (fcp === undefined || m.live === undefined || m.liveFrame === undefined) throw new Error(`${name}: no first-contentful-paint entry or no live mark`);
      got.push({ fcp, live: m.live, liveFrame: m.liveFrame });
      await p.close();
      await sleep(2000);
    }
    progress(`first paint, ${name} (${path}): FCP ${got.map((g) => ms(g.fcp)).join(', ')} ms; live ${got.map((g) => ms(g.liveFrame)).join(', ')} ms`);
    out.set(`${name} (${path})`, got);
  }
  await context.close();
  return out;
}

interface Footprint {
  label: string;
  cpuPct: number;
  rssMiB: number;
  seconds: number;
}

async function observerPid(host: string): Promise<number> {
  const found = (await listProcesses(host)).filter((p) => p.name === 'observer');
  if (found.length !== 1) throw new Error(`expected one observer process on ${host}, found ${found.length}`);
  return found[0]!.pid;
}

/** The observer's CPU share and RSS over one window, with `count` pages at `path` open (each its own context and login). */
async function footprint(login: Login, host: string, label: string, count: number, path: string): Promise<Footprint> {
  const opened: { context: BrowserContext; page: Page }[] = [];
  for (let i = 0; i < count; i++) opened.push(await loggedIn(login, path));
  progress(`${label}: ${count} page(s) open and live; settling ${settleMs / 1000} s`);
  await sleep(settleMs);
  for (const [i, o] of opened.entries()) await stillLive(o.page, `${label}, page ${i + 1}`);
  const pid = await observerPid(host);
  const a = await usage(pid);
  const t0 = performance.now();
  await sleep(windowMs);
  const b = await usage(pid);
  const seconds = (performance.now() - t0) / 1000;
  if (!a || !b) throw new Error(`the observer (pid ${pid}) exited during the window`);
  for (const [i, o] of opened.entries()) await stillLive(o.page, `${label}, page ${i + 1}`);
  const f = { label, cpuPct: ((b.cpuS - a.cpuS) / seconds) * 100, rssMiB: b.rssMiB, seconds };
  progress(`${label}: observer ${f.cpuPct.toFixed(2)} % of a core, ${f.rssMiB.toFixed(0)} MiB`);
  for (const o of opened) await o.context.close();
  await sleep(2000);
  return f;
}

interface Round {
  old: string;
  next: string;
  epoch: number;
  /** Milliseconds from the record's arrival on this script's watch. */
  tile: number;
  tileFrame: number | undefined;
  baseline: number;
  /** From the `failover` event's arrival on the watch to the incident's title on the Timeline. */
  incident: number;
  /** The event's own timestamp to its arrival here (etcd and the watch). */
  eventToWatch: number;
}

/** A tight loop of the feed's own reading; each answer's arrival time and the active machine it named. */
function statusLoop(ctx: OpsContext): { seen: { at: number; node: string | null; epoch: number | null }[]; stop: () => Promise<number> } {
  const seen: { at: number; node: string | null; epoch: number | null }[] = [];
  let stop = false;
  let readings = 0;
  const loop = (async () => {
    while (!stop) {
      try {
        const s = await clusterStatus(ctx, 1);
        readings++;
        seen.push({ at: Date.now(), node: s.active?.node ?? null, epoch: s.active?.epoch ?? null });
        if (seen.length > 5000) seen.splice(0, 1000);
      } catch {
        await sleep(50);
      }
    }
  })();
  return {
    seen,
    stop: async () => {
      stop = true;
      await loop;
      return readings;
    },
  };
}

async function failovers(lab: LabHandle, login: Login, ctx: OpsContext): Promise<Round[]> {
  const now = await loggedIn(login, '/');
  const tl = await loggedIn(login, '/timeline');
  for (const [name, p] of [
    ['Now', now.page],
    ['Timeline', tl.page],
  ] as const)
    progress(`${name} page open for the rounds (document.visibilityState: ${(await marks(p)).visibility})`);
  const records: { at: number; node: string; epoch: number }[] = [];
  const events: { at: number; type: string; node?: string; epoch?: number; stampedAt: number }[] = [];
  const w1 = await ctx.store.watchActive((r) => r && records.push({ at: Date.now(), node: r.node, epoch: r.epoch }));
  const w2 = await ctx.events.watch((e) =>
    events.push({
      at: Date.now(),
      type: e.type,
      ...(e.node ? { node: e.node } : {}),
      ...(e.epoch !== undefined ? { epoch: e.epoch } : {}),
      stampedAt: Date.parse(e.at),
    }),
  );
  const loop = statusLoop(ctx);
  const out: Round[] = [];
  try {
    for (let r = 1; r <= rounds; r++) {
      await labSettled(lab);
      await stillLive(now.page, 'Now');
      await stillLive(tl.page, 'Timeline');
      const before = records.at(-1);
      if (!before) throw new Error('no active record seen on the watch');
      // The pages' wall clock against this process's (same host): corrected if they differ.
      const skew = await now.page.evaluate(() => performance.timeOrigin + performance.now() - Date.now());
      const wall0 = Date.now();
      progress(`round ${r}: killing ${before.node} (active at epoch ${before.epoch}); page clock skew ${skew.toFixed(1)} ms`);
      await labKill(before.node);
      try {
        const rec = await waitFor('a new active record on the watch', async () => records.find((x) => x.at >= wall0 && x.node !== before.node), 120_000, 50);
        const tileText = `${rec.node} at epoch ${rec.epoch}`;
        const tile = await waitFor(
          `the Now page to show "${tileText}"`,
          async () => (await marks(now.page)).tiles.find((t) => t.text === tileText && t.frameAt !== undefined),
          120_000,
          200,
        );
        const base = await waitFor(
          'the status loop to name the new machine',
          async () => loop.seen.find((s) => s.at >= rec.at && s.node === rec.node),
          60_000,
          50,
        );
        const ev = await waitFor(
          'the failover event on the watch',
          async () => events.find((e) => e.at >= wall0 && e.type === 'failover' && e.node === rec.node && e.epoch === rec.epoch),
          60_000,
          50,
        );
        const title = new RegExp(`^Failover ${before.node} → ${rec.node} \\(epoch ${rec.epoch}[,)]`);
        const inc = await waitFor(
          `the Timeline to show an incident matching ${title}`,
          async () => Object.entries((await marks(tl.page)).titles).find(([t, m]) => title.test(t) && m.frameAt !== undefined)?.[1],
          120_000,
          200,
        );
        const round: Round = {
          old: before.node,
          next: rec.node,
          epoch: rec.epoch,
          tile: tile.at - skew - rec.at,
          tileFrame: tile.frameAt === undefined ? undefined : tile.frameAt - skew - rec.at,
          baseline: base.at - rec.at,
          incident: inc.at - skew - ev.at,
          eventToWatch: ev.at - ev.stampedAt,
        };
        out.push(round);
        progress(
          `round ${r}: ${round.old} -> ${round.next} at epoch ${round.epoch}: record on the watch ${((rec.at - wall0) / 1000).toFixed(1)} s after the kill; ` +
            `Now tile +${ms(round.tile)} ms (frame +${round.tileFrame === undefined ? '?' : ms(round.tileFrame)}), status loop +${ms(round.baseline)} ms, ` +
            `Timeline incident +${ms(round.incident)} ms after the failover event (event stamped ${ms(round.eventToWatch)} ms before it reached the watch)`,
        );
      } catch (err) {
        console.log(
          `round ${r} failed; Now: ${(
            await now.page
              .locator('#tiles')
              .innerText()
              .catch(() => '?')
          ).replace(/\s+/g, ' ')}`,
        );
        console.log(`records seen: ${JSON.stringify(records.slice(-3))}; events seen: ${JSON.stringify(events.slice(-8))}`);
        const observer = withRole(lab.cluster, 'observer')[0]!;
        await printJournals(
          [[observer.name, UNITS.observer], ...withRole(lab.cluster, 'app').map((m): [string, string] => [m.name, UNITS.agent])],
          wall0,
          Date.now(),
        );
        throw err;
      }
      if (r === rounds) break; // the lab goes down next
      progress(`round ${r}: reviving ${before.node}`);
      await labRevive(before.node);
    }
  } finally {
    progress(`status loop: ${await loop.stop()} readings`);
    await w1.close();
    await w2.close();
    await now.context.close();
    await tl.context.close();
  }
  return out;
}

const loadavg = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
const commit = (await run('git', ['-C', import.meta.dirname, 'rev-parse', '--short', 'HEAD'])).stdout.trim();
const dirty = (await run('git', ['-C', import.meta.dirname, 'status', '--porcelain', '--untracked-files=no'])).stdout.trim() !== '';
const loadAtStart = await loadavg();
progress(`commit ${commit}${dirty ? ' (with uncommitted changes)' : ''}; load average ${loadAtStart}; ${process.argv.slice(2).join(' ') || 'defaults'}`);

try {
  await labDown();
  progress('lab up (pair)');
  const lab = await labUp({ topology: 'pair' }, (l) => progress(`lab: ${l}`));
  await labSettled(lab);
  const d = await labDashboard();
  if (!d) throw new Error('the lab serves no dashboard (`vigil lab status --json` has no dashboard field)');
  const login: Login = { url: d.url, user: d.user, password: (await readFile(d.passwordFile, 'utf8')).trim() };
  const ca = await readFile(join(LAB_DIR, 'pki', 'ca.pem'), 'utf8');
  browser = await launchChromium(d.url, ca);
  ops = await openOps(LAB_OPS);
  const host = withRole(lab.cluster, 'observer')[0]!.name;

  if (values.screenshot) await screenshot(login, values.screenshot);

  progress(`first paint: ${samples} samples per page`);
  const paints = await firstPaints(login);

  await labSettled(lab);
  const feet: Footprint[] = [];
  feet.push(await footprint(login, host, 'no page open', 0, '/'));
  feet.push(await footprint(login, host, 'one Now page', 1, '/'));
  feet.push(await footprint(login, host, `${manyPages} Now pages`, manyPages, '/'));
  feet.push(await footprint(login, host, `${manyPages} Timeline pages`, manyPages, '/timeline'));
  // The first window again: how far two windows of the same load differ on this machine.
  feet.push(await footprint(login, host, 'no page open (again)', 0, '/'));

  progress(`failover rounds: ${rounds}`);
  const done = await failovers(lab, login, ops);

  console.log(
    `\nThe dashboard (${new Date().toISOString().slice(0, 16)}Z, commit ${commit}${dirty ? '+' : ''}, pair lab, chromium ${browser.version()}, load average at the start ${loadAtStart}, at the end ${await loadavg()})`,
  );
  console.log(`\nFirst paint, ${samples} samples per page, a new tab each, alone (ms from navigation start; median | worst | each)`);
  console.log(
    '| page | first contentful paint: median | worst | each | live (first snapshot drawn, next frame): median | worst | each |\n|---|---|---|---|---|---|---|',
  );
  for (const [page, got] of paints) console.log(`| ${page} | ${row(got.map((g) => g.fcp))} | ${row(got.map((g) => g.liveFrame))} |`);

  console.log(`\nAfter a failover, ${done.length} rounds (the active machine killed; ms; median | worst | each)`);
  console.log('| from → to | median | worst | rounds |\n|---|---|---|---|');
  const line = (what: string, xs: (number | undefined)[]) => {
    const ok = xs.filter((x): x is number => x !== undefined);
    console.log(
      `| ${what} | ${ok.length ? `${ms(med(ok))} | ${ms(Math.max(...ok))}` : 'none | '} | ${xs.map((x) => (x === undefined ? '?' : ms(x))).join(', ')} |`,
    );
  };
  line(
    "new active record on an etcd watch → the Now page's tile changed (DOM)",
    done.map((r) => r.tile),
  );
  line(
    '… → the next animation frame (pixels)',
    done.map((r) => r.tileFrame),
  );
  line(
    "baseline: … → the feed's reading (`clusterStatus`, as `vigil status --json`) in a tight loop names it",
    done.map((r) => r.baseline),
  );
  line(
    "`failover` event on the watch → the Timeline's incident",
    done.map((r) => r.incident),
  );
  line(
    "the event's own timestamp → its arrival on the watch",
    done.map((r) => r.eventToWatch),
  );

  console.log(`\nThe observer (${host}, main process, /proc), ${settleMs / 1000} s settling, then a window of ${windowMs / 1000} s`);
  console.log('| pages open | CPU, % of a core | RSS (MiB) | window (s) |\n|---|---|---|---|');
  for (const f of feet) console.log(`| ${f.label} | ${f.cpuPct.toFixed(2)} | ${f.rssMiB.toFixed(0)} | ${f.seconds.toFixed(1)} |`);

  console.log(`\nBrowser problems (console errors, CSP violations, page errors): ${problems.length ? `\n  ${problems.join('\n  ')}` : 'none'}`);
} finally {
  await cleanup();
}
