/**
 * Sessions and the login rate limit of the dashboard, in the observer's memory (a restarted
 * observer logs everyone out). Pure apart from the clock and the random source, both injectable.
 */
import { randomBytes } from 'node:crypto';
import type { DashboardRole } from '../config/schema.ts';

export interface Session {
  user: string;
  role: DashboardRole;
  /** Monotonic milliseconds after which the session is over. */
  expiresMs: number;
}

/** A session ends after this long without a request (a wall screen's open stream keeps it alive). */
export const SESSION_IDLE_MS = 12 * 3600_000;
/** The cookie's name: `__Host-` makes the browser refuse it without Secure, with a Domain, or off path `/`. */
export const SESSION_COOKIE = '__Host-vigil-session';

export class Sessions {
  private readonly byToken = new Map<string, Session>();

  constructor(
    private readonly now: () => number = () => performance.now(),
    private readonly idleMs = SESSION_IDLE_MS,
  ) {}

  create(user: string, role: DashboardRole): string {
    this.sweep();
    const token = randomBytes(32).toString('base64url');
    this.byToken.set(token, { user, role, expiresMs: this.now() + this.idleMs });
    return token;
  }

  /** The session of a token, its idle time reset; undefined for an unknown or expired one. */
  get(token: string | undefined): Session | undefined {
    if (!token) return undefined;
    const s = this.byToken.get(token);
    if (!s) return undefined;
    if (s.expiresMs <= this.now()) {
      this.byToken.delete(token);
      return undefined;
    }
    s.expiresMs = this.now() + this.idleMs;
    return s;
  }

  end(token: string | undefined): void {
    if (token) this.byToken.delete(token);
  }

  private sweep(): void {
    const now = this.now();
    for (const [t, s] of this.byToken) if (s.expiresMs <= now) this.byToken.delete(t);
  }
}

/** `Set-Cookie` for a session: HttpOnly, Secure, SameSite=Strict, whole site; no Max-Age (ends with the browser). */
export const sessionCookie = (token: string): string => `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; Secure; SameSite=Strict`;
export const clearedCookie = (): string => `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`;

/** The session token in a `Cookie` header, if any. */
export function tokenOf(cookieHeader: string | undefined): string | undefined {
  for (const part of (cookieHeader ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}

export interface RateLimitOptions {
  /** Failed logins a client address may make in `windowMs` before it must wait. */
  perClient: number;
  /** Failed logins from every address together in `windowMs` (a spread-out guess). */
  overall: number;
  windowMs: number;
}

export const LOGIN_LIMITS: RateLimitOptions = { perClient: 5, overall: 30, windowMs: 5 * 60_000 };

/**
 * Counts failed logins in a sliding window, per client address and overall. While a limit is
 * reached every login from that address (or from all, for the overall one) is refused at once,
 * before the password is checked, until the oldest failure leaves the window.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  private all: number[] = [];

  constructor(
    private readonly o: RateLimitOptions = LOGIN_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Milliseconds the client must wait before it may try again; 0 when it may try now. */
  retryAfterMs(client: string): number {
    const now = this.now();
    const mine = this.recent(client, now);
    this.all = this.all.filter((t) => t > now - this.o.windowMs);
    const waits = [0];
    if (mine.length >= this.o.perClient) waits.push(mine[mine.length - this.o.perClient]! + this.o.windowMs - now);
    if (this.all.length >= this.o.overall) waits.push(this.all[this.all.length - this.o.overall]! + this.o.windowMs - now);
    return Math.max(...waits);
  }

  failed(client: string): void {
    const now = this.now();
    this.failures.set(client, [...this.recent(client, now), now]);
    this.all.push(now);
  }

  private recent(client: string, now: number): number[] {
    const kept = (this.failures.get(client) ?? []).filter((t) => t > now - this.o.windowMs);
    if (kept.length) this.failures.set(client, kept);
    else this.failures.delete(client);
    return kept;
  }
}
