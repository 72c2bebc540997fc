/**
 * The webhook channel: a JSON POST per alert. node:http rather than fetch: fetch refuses the
 * "bad ports" of the Fetch standard (6000, 6665-6669, 10080, ...) that internal receivers do use,
 * follows redirects with the body, and reports every network failure as "fetch failed".
 */
import http from 'node:http';
import https from 'node:https';
import type { VigilEvent } from '../model/ha.ts';
import { tokenInClear, type AlertsConfig } from '../config/alerts.ts';
import type { Suppressed, WebhookPayload } from './format.ts';
import { redactor } from './redact.ts';
import type { Channel } from './send.ts';

type WebhookConfig = NonNullable<AlertsConfig['webhook']>;

/** Waits between attempts: 2 retries. A receiver restarting behind a proxy is back within this. */
export const DEFAULT_RETRY_DELAYS_MS = [500, 2000];

interface Answer {
  status: number;
  text: string;
  location?: string | undefined;
}

class AttemptError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

export function webhookChannel(cfg: WebhookConfig, token: string | undefined, cluster: string, retryDelaysMs = DEFAULT_RETRY_DELAYS_MS): Channel {
  const url = new URL(cfg.url);
  // Messages name the endpoint without user info or query string: either may hold a credential.
  const where = `webhook ${url.origin}${url.pathname}`;
  const redact = redactor([token, url.password || undefined, url.search.length > 1 ? url.search.slice(1) : undefined]);
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

  return {
    name: 'webhook',
    async send(event: VigilEvent, suppressed?: Suppressed) {
      // `vigil validate` and apply refuse this; a hand-edited vigil.yaml on the machine must not leak the token either.
      if (token !== undefined && tokenInClear(cfg.url))
        throw Object.assign(new Error(`${where}: webhookToken is never sent over http://; make alerts.webhook.url https://`), { attempts: 0 });
      const payload: WebhookPayload = suppressed && suppressed.count > 0 ? { cluster, event, suppressed } : { cluster, event };
      const body = JSON.stringify(payload);
      let attempts = 0;
      for (;;) {
        attempts++;
        let err: AttemptError;
        try {
          const answer = await post(url, body, token, cfg.timeoutMs);
          if (answer.status >= 200 && answer.status < 300) return { attempts };
          err = judge(answer);
        } catch (e) {
          err = new AttemptError(e instanceof Error ? e.message : String(e), true);
        }
        const delay = retryDelaysMs[attempts - 1];
        if (!err.retryable || delay === undefined) {
          const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
          throw Object.assign(new Error(redact(`${where}: ${err.message}${tries}`)), { attempts });
        }
        await sleep(delay);
      }
    },
    close() {
      // Nothing held open: each attempt has its own connection (agent: false).
    },
  };
}

/** What a non-2xx answer means: server-side trouble is worth another try, our mistakes are not. */
function judge(a: Answer): AttemptError {
  const excerpt = a.text.trim().replace(/\s+/g, ' ').slice(0, 200);
  const said = excerpt ? `: ${excerpt}` : '';
  if (a.status >= 500) return new AttemptError(`answered ${a.status}${said}`, true);
  // 429 is the receiver asking to come back later, not a fault in the request.
  if (a.status === 429) return new AttemptError(`answered 429 (too many requests)${said}`, true);
  if (a.status >= 300 && a.status < 400) {
    // Not followed: the Authorization header would go wherever the redirect points.
    return new AttemptError(
      `answered ${a.status}, a redirect${a.location ? ` to ${a.location.split('?')[0]}` : ''}; set alerts.webhook.url to the final address`,
      false,
    );
  }
  const fix = a.status === 401 || a.status === 403 ? '; check webhookToken in the secrets file' : a.status === 404 ? '; check alerts.webhook.url' : '';
  return new AttemptError(`answered ${a.status}${said}${fix}`, false);
}

/** One POST with a deadline covering connect, request and the whole answer. */
function post(url: URL, body: string, token: string | undefined, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      settle(() => reject(new Error(`no complete answer within ${timeoutMs} ms`)));
      req.destroy();
    }, timeoutMs);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'user-agent': 'vigil-observer',
    };
    if (token) headers.authorization = `Bearer ${token}`;
    // agent: false: a fresh connection per alert, none left open to keep the process alive.
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        // Only the start of the answer goes into messages; the rest is read and dropped.
        if (size < 4096) chunks.push(c);
        size += c.length;
      });
      res.on('end', () =>
        settle(() => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8').slice(0, 4096), location: res.headers.location })),
      );
      res.on('error', (e) => settle(() => reject(e)));
    });
    req.on('error', (e: NodeJS.ErrnoException) => settle(() => reject(new Error(networkMessage(e)))));
    req.end(body);
  });
}

function networkMessage(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ECONNREFUSED':
      return 'connection refused; is the receiver running, and is alerts.webhook.url right?';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host name does not resolve on this machine; check alerts.webhook.url';
    case 'ECONNRESET':
      return 'the receiver closed the connection';
    default:
      return e.code ? `${e.code}: ${e.message}` : e.message;
  }
}
