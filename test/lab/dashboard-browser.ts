/**
 * The dashboard in a real browser: Debian's chromium (scripts/setup.sh) driven by playwright-core,
 * never a downloaded browser. Chromium does not know the cluster CA, so the test checks the
 * observer's certificate against the cluster CA with node:tls first and then tells chromium to
 * accept exactly that certificate's key (`--ignore-certificate-errors-spki-list`), nothing else.
 */
import { createHash } from 'node:crypto';
import { connect } from 'node:tls';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.VIGIL_CHROMIUM ?? '/usr/bin/chromium';

/** The base64 SHA-256 of the server certificate's public key, once its chain to `ca` and its address are verified. */
export function verifiedSpki(url: string, ca: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: u.hostname, port: Number(u.port), ca: [ca], servername: undefined, timeout: 10_000 }, () => {
      const cert = s.getPeerX509Certificate();
      s.end();
      if (!cert) return reject(new Error(`${url}: no certificate`));
      resolve(
        createHash('sha256')
          .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
          .digest('base64'),
      );
    });
    s.once('error', reject); // a certificate not from the cluster CA, or not for this address, fails here
    s.once('timeout', () => s.destroy(new Error(`${url}: no TLS handshake within 10 s`)));
  });
}

export interface DashboardPage {
  browser: Browser;
  page: Page;
  /** Console errors (CSP violations among them) and uncaught page errors, as they came. */
  problems: string[];
  /**
   * Loads that failed because this host's network changed under chromium (ERR_NETWORK_CHANGED:
   * another lab adding or removing its interfaces), kept apart from `problems`: not the page's doing.
   */
  networkChanged: string[];
  close(): Promise<void>;
}

/** Debian's chromium, accepting exactly the observer's certificate key once its chain to `ca` is verified. */
export async function launchChromium(url: string, ca: string): Promise<Browser> {
  const spki = await verifiedSpki(url, ca);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--disable-background-networking', '--disable-component-update', '--no-first-run', `--ignore-certificate-errors-spki-list=${spki}`],
  });
  console.log(`# browser: chromium ${browser.version()} (playwright-core drives ${CHROMIUM})`);
  return browser;
}

/** Logs in through the form at `url`; the browser goes on to the "Now" page, which the caller waits to be live. */
export async function logIn(page: Page, url: string, user: string, password: string): Promise<void> {
  await page.goto(url);
  await page.waitForURL(/\/login$/);
  await page.getByLabel('Name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** Launches chromium, logs in through the form, and waits for the "Now" page to be live. */
export async function openDashboard(url: string, ca: string, user: string, password: string): Promise<DashboardPage> {
  const browser = await launchChromium(url, ca);
  const problems: string[] = [];
  const networkChanged: string[] = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (/net::ERR_NETWORK_CHANGED/.test(m.text())) {
        networkChanged.push(m.text());
        console.log(`# browser: the host's network changed under chromium (another lab's interfaces): ${m.text()}`);
      } else problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.setDefaultTimeout(60_000);
    await logIn(page, url, user, password);
    const d = { browser, page, problems, networkChanged, close: () => browser.close() };
    await whenLive(d);
    await page.locator('[data-tile="active"] .value').waitFor();
    return d;
  } catch (err) {
    await browser.close();
    throw new Error(`${(err as Error).message}\n  browser problems: ${problems.join(' | ') || 'none'}`, { cause: err });
  }
}

/**
 * Waits until the page's stream is live. A page whose script or stream could not load because the
 * host's network changed under chromium (`networkChanged` grew) is loaded again, up to three
 * times; any other page that does not go live within `timeoutMs` fails the test.
 */
export async function whenLive(d: DashboardPage, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = d.networkChanged.length;
  for (let reloads = 0; ;) {
    try {
      await d.page.locator('#conn.live').waitFor({ timeout: Math.max(1000, Math.min(10_000, deadline - Date.now())) });
      return;
    } catch (err) {
      if (d.networkChanged.length > seen && reloads < 3) {
        reloads++;
        seen = d.networkChanged.length;
        console.log(`# browser: ${d.page.url()} not live after the host's network changed; loading it again`);
        await d.page.reload();
      } else if (Date.now() >= deadline) throw err;
    }
  }
}
