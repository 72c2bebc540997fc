/**
 * Sending alerts: the observer hands every recorded event to alert(); the events the cluster
 * file names go out by e-mail and/or webhook. alert() never throws and every channel has a
 * deadline: an alert that cannot be sent is reported and logged, it never holds up a failover.
 *
 * Rate limit: at most one alert per (event type, machine) per window, so a flapping machine
 * does not flood the mailbox. Events inside the window are held back; when the window ends the
 * latest of them is sent with the count, so the last alert always tells the current state
 * (node-lost and node-back are separate kinds: without this trailing alert a flap could end on a
 * held-back node-lost and leave a "node-back" as the last word). Air-gap imports and refusals
 * are not rate-limited: each is an operator's act, never a flap, and each must be told.
 */
import type { EventType, VigilEvent } from '../model/ha.ts';
import type { AlertSecrets, AlertsConfig } from '../config/alerts.ts';
import { emailChannel } from './email.ts';
import type { Suppressed } from './format.ts';
import { webhookChannel } from './webhook.ts';

export type AlertChannel = 'email' | 'webhook';

/** Events every one of which is alerted, whatever `rateLimitSeconds` says. */
export const NOT_RATE_LIMITED: ReadonlySet<EventType> = new Set<EventType>(['airgap-import', 'airgap-refused']);

export interface AlertResult {
  channel: AlertChannel;
  /** false only when sending was tried and failed. */
  ok: boolean;
  /** Set when nothing was sent: the type is not in alerts.events, or the rate limit held it back. */
  skipped?: 'filtered' | 'rate-limited';
  /** Why sending failed, with what to check; never contains a secret. */
  error?: string;
  /** Attempts made (the webhook retries; e-mail makes one). */
  attempts: number;
  /** Time spent on this channel. */
  ms: number;
}

/** Structured log lines, the shape src/refapp/http.ts's Logger writes. */
export type AlertLogger = (entry: Record<string, unknown>) => void;

/** Time for the rate limit; injected by tests. Retry waits and deadlines use real time. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface AlerterOptions {
  /** The cluster's name, in every subject and payload (default `vigil`). */
  clusterName?: string;
  log?: AlertLogger;
  clock?: Clock;
  /** Waits between webhook attempts (default 500 ms, then 2 s: two retries). */
  retryDelaysMs?: number[];
}

export interface Alerter {
  /** Sends `event` on every configured channel; resolves with one result per channel, never rejects. */
  alert(event: VigilEvent): Promise<AlertResult[]>;
  /** Sends the alerts still held back by the rate limit, waits for those in flight, releases the channels. */
  close(): Promise<void>;
}

/** A way out for alerts; send() rejects with a message fit to show (no secret, says what to check). */
export interface Channel {
  name: AlertChannel;
  send(event: VigilEvent, suppressed?: Suppressed): Promise<{ attempts: number }>;
  close(): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref(); // a held-back alert must not keep a finished CLI alive; close() sends it
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Per (type, machine): when an alert last went out, and what has been held back since. */
interface Slot {
  sentAt: number;
  held: number;
  heldSince?: string;
  latest?: VigilEvent;
  timer?: unknown;
}

export function createAlerter(config: AlertsConfig, secrets: AlertSecrets, opts: AlerterOptions = {}): Alerter {
  const cluster = opts.clusterName ?? 'vigil';
  const log: AlertLogger = opts.log ?? (() => {});
  const clock = opts.clock ?? realClock;
  const windowMs = config.rateLimitSeconds * 1000;
  const wanted = new Set(config.events);
  const channels: Channel[] = [];
  if (config.email) channels.push(emailChannel(config.email, secrets.smtpPassword, cluster));
  if (config.webhook) channels.push(webhookChannel(config.webhook, secrets.webhookToken, cluster, opts.retryDelaysMs));
  // Bounded by event types × machines, so never pruned.
  const slots = new Map<string, Slot>();
  const inflight = new Set<Promise<unknown>>();
  let closed = false;

  const skipped = (why: 'filtered' | 'rate-limited'): AlertResult[] => channels.map((c) => ({ channel: c.name, ok: true, skipped: why, attempts: 0, ms: 0 }));

  async function sendOne(c: Channel, event: VigilEvent, suppressed?: Suppressed): Promise<AlertResult> {
    const start = Date.now();
    const base = { type: event.type, node: event.node, channel: c.name };
    try {
      const { attempts } = await c.send(event, suppressed);
      const r: AlertResult = { channel: c.name, ok: true, attempts, ms: Date.now() - start };
      log({ event: 'alert-sent', ...base, attempts, ms: r.ms, ...(suppressed ? { heldBack: suppressed.count } : {}) });
      return r;
    } catch (err) {
      // Channels word their errors without secrets; anything else is a bug, reported plainly.
      const error = err instanceof Error ? err.message : String(err);
      const attempts = (err as { attempts?: number }).attempts ?? 1;
      const r: AlertResult = { channel: c.name, ok: false, error, attempts, ms: Date.now() - start };
      log({ event: 'alert-failed', ...base, error, attempts, ms: r.ms });
      return r;
    }
  }

  function dispatch(event: VigilEvent, suppressed?: Suppressed): Promise<AlertResult[]> {
    const p = Promise.all(channels.map((c) => sendOne(c, event, suppressed)));
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    return p;
  }

  /** The window of `key` ended with events held back: send the latest with the count. */
  function flush(key: string): void {
    const slot = slots.get(key);
    if (!slot || slot.held === 0 || !slot.latest) return;
    const { latest, held, heldSince } = slot;
    slots.set(key, { sentAt: clock.now(), held: 0 });
    // `held` includes the event sent now; the count is of those never sent on their own.
    void dispatch(latest, { count: held - 1, since: heldSince ?? latest.at, windowSeconds: config.rateLimitSeconds });
  }

  return {
    async alert(event) {
      if (channels.length === 0) return [];
      if (closed) return channels.map((c) => ({ channel: c.name, ok: false, error: 'alerts are closed (the observer is stopping)', attempts: 0, ms: 0 }));
      if (!wanted.has(event.type)) return skipped('filtered');
      if (NOT_RATE_LIMITED.has(event.type)) return dispatch(event);
      const key = `${event.type}\0${event.node ?? ''}`;
      const now = clock.now();
      const slot = slots.get(key);
      if (windowMs > 0 && slot && now - slot.sentAt < windowMs) {
        slot.held++;
        slot.heldSince ??= event.at;
        slot.latest = event;
        slot.timer ??= clock.setTimeout(
          () => {
            slot.timer = undefined;
            flush(key);
          },
          slot.sentAt + windowMs - now,
        );
        log({ event: 'alert-held', type: event.type, node: event.node, heldBack: slot.held, windowSeconds: config.rateLimitSeconds });
        return skipped('rate-limited');
      }
      // Window over (or none yet): this event goes out now, carrying the count of any held back
      // whose trailing alert has not fired yet.
      if (slot?.timer !== undefined) clock.clearTimeout(slot.timer);
      const suppressed = slot && slot.held > 0 ? { count: slot.held, since: slot.heldSince ?? event.at, windowSeconds: config.rateLimitSeconds } : undefined;
      slots.set(key, { sentAt: now, held: 0 });
      return dispatch(event, suppressed);
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const [key, slot] of slots) {
        if (slot.timer !== undefined) clock.clearTimeout(slot.timer);
        slot.timer = undefined;
        flush(key);
      }
      await Promise.allSettled([...inflight]);
      for (const c of channels) c.close();
    },
  };
}
