/**
 * Deadlines, cancellation and error mapping for every etcd call. Retry policy lives here and in
 * the callers' loops, not in etcd3: its default policies retry three times and open a 5 s
 * circuit breaker per endpoint, which would both hide an outage from the caller's deadline and
 * refuse the first calls after etcd is back (see `passThroughPolicy`). In their place, a member
 * that just failed a call is passed over while another has not (`MemberHealth`).
 */
import {
  ClientClosedError,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  RecoverableError,
  castGrpcError,
  isRecoverableError,
  type IOptions,
} from 'etcd3';
import { VigilError, problem, type ErrorCode, type Problem } from '../util/errors.ts';

/** Every store call accepts these; `timeoutMs` defaults to the store's `callTimeoutMs`. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The registry's codes a StoreError carries (src/util/errors.ts, docs/errors.md). */
export const STORE_ERROR_CODES = [
  'ETCD_TIMEOUT',
  'ETCD_UNAVAILABLE',
  'ETCD_REFUSED',
  'ETCD_DATA',
  'ETCD_CLOSED',
  'ETCD_CANCELLED',
  'ETCD_FAILED',
] as const satisfies readonly ErrorCode[];
export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number];

/** An etcd call that failed: which operation, on which endpoints, and whether to try again. */
export class StoreError extends VigilError {
  declare readonly code: StoreErrorCode;
  /** The store operation, e.g. "casActive". */
  readonly op: string;

  constructor(code: StoreErrorCode, op: string, p: Problem, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(code, [p], { cause: opts.cause, retryable: opts.retryable ?? (code === 'ETCD_TIMEOUT' || code === 'ETCD_UNAVAILABLE') });
    this.name = 'StoreError';
    this.op = op;
  }
}

const CHECK_ETCD = 'check that etcd is running and reachable (`etcdctl endpoint health --cluster`), then retry';

export function toStoreError(op: string, endpoints: string[], err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const where = `etcd ${endpoints.join(',')} (${op})`;
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof ClientClosedError) return new StoreError('ETCD_CLOSED', op, problem(where, 'the store is closed', 'open a new store'), { cause: err });
  if (
    err instanceof EtcdPermissionDeniedError ||
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof EtcdInvalidAuthTokenError ||
    err instanceof GRPCUnauthenticatedError
  ) {
    return new StoreError('ETCD_REFUSED', op, problem(where, `refused: ${msg}`, "check the etcd user, password and role in the cluster's secrets"), {
      cause: err,
    });
  }
  if (err instanceof Error && isRecoverableError(err))
    return new StoreError('ETCD_UNAVAILABLE', op, problem(where, `unavailable: ${msg}`, CHECK_ETCD), { cause: err });
  return new StoreError('ETCD_FAILED', op, problem(where, msg, 'see the cause; if etcd is healthy this is a bug in Vigil'), { cause: err });
}

export function badData(op: string, key: string, why: string, fix?: string): StoreError {
  return new StoreError('ETCD_DATA', op, problem(`etcd key ${key}`, why, fix ?? `inspect it with \`etcdctl get ${key}\`; delete it if it was written by hand`));
}

/** Runs etcd calls under a deadline; one per store. */
export class Caller {
  closed = false;

  constructor(
    readonly endpoints: string[],
    private readonly defaultTimeoutMs: number,
  ) {}

  /**
   * Calls `fn` until it succeeds, fails for good, or the deadline passes. `fn` receives the gRPC
   * deadline so the call itself is cancelled on the wire, not just abandoned. With `once`,
   * recoverable errors are not retried (for writes whose outcome would be unknown), except a
   * call gRPC never sent for want of a connection (`neverSent`): after a member restarts, gRPC
   * keeps its channel to it failing fast until its reconnect backoff ends, and etcd3 picks a
   * member at random for each call, so without this one restarted member can fail every `once`
   * call that lands on it for seconds while the other members answer.
   */
  async run<T>(op: string, opts: CallOptions | undefined, fn: (grpc: { deadline: Date }) => Promise<T>, mode: 'retry' | 'once' = 'retry'): Promise<T> {
    if (this.closed) throw toStoreError(op, this.endpoints, new ClientClosedError(op));
    const timeoutMs = opts?.timeoutMs ?? this.defaultTimeoutMs;
    const end = performance.now() + timeoutMs;
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      const remaining = end - performance.now();
      if (remaining <= 0) throw this.timeout(op, timeoutMs, last);
      try {
        // gRPC wants wall-clock time; the monotonic clock above decides when we give up.
        return await bounded(fn({ deadline: new Date(Date.now() + remaining) }), remaining, opts?.signal);
      } catch (err) {
        if (err === TIMED_OUT) throw this.timeout(op, timeoutMs, last);
        if (err === CANCELLED) throw this.cancelled(op);
        // gRPC's deadline is ours, measured by the wall clock: it may fire a hair before the
        // monotonic check below would, and is the same timeout.
        if (err instanceof GRPCDeadlineExceededError) throw this.timeout(op, timeoutMs, err);
        const mapped = toStoreError(op, this.endpoints, err);
        if (!mapped.retryable) throw mapped;
        // A failure right at the end: report it as the timeout it is.
        if (performance.now() >= end) throw this.timeout(op, timeoutMs, err);
        // A call that never left this process (gRPC had no connection to the member it picked)
        // had no outcome: trying it again, likely on another member, cannot apply it twice.
        if (mode === 'once' && !neverSent(err)) throw mapped;
        last = err;
      }
      const pause = Math.min(50 * 2 ** attempt, 1000, Math.max(0, end - performance.now()));
      try {
        await bounded(new Promise((r) => setTimeout(r, pause)), pause + 1000, opts?.signal);
      } catch {
        throw this.cancelled(op);
      }
    }
  }

  private timeout(op: string, timeoutMs: number, last: unknown): StoreError {
    const why = last instanceof Error ? ` (last error: ${last.message})` : '';
    return new StoreError('ETCD_TIMEOUT', op, problem(`etcd ${this.endpoints.join(',')} (${op})`, `no answer within ${timeoutMs} ms${why}`, CHECK_ETCD), {
      cause: last,
    });
  }

  private cancelled(op: string): StoreError {
    return new StoreError('ETCD_CANCELLED', op, problem(`etcd ${this.endpoints.join(',')} (${op})`, 'cancelled by the caller', 'none needed'), {
      retryable: false,
    });
  }
}

/**
 * gRPC failed the call before sending it: its picker had no connection to the member
 * (grpc-js's "No connection established", status UNAVAILABLE). Nothing reached etcd.
 */
export function neverSent(err: unknown): boolean {
  return err instanceof Error && /\bUNAVAILABLE\b.*No connection established/.test(err.message);
}

const TIMED_OUT = Symbol('timed out');
const CANCELLED = Symbol('cancelled');

/** `p`, or rejects with TIMED_OUT / CANCELLED; `p` itself is left to settle (and its rejection swallowed). */
function bounded<T>(p: Promise<T>, ms: number, signal: AbortSignal | undefined): Promise<T> {
  if (signal?.aborted) {
    p.catch(() => undefined);
    return Promise.reject(CANCELLED);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => finish(() => reject(CANCELLED));
    const timer = setTimeout(() => finish(() => reject(TIMED_OUT)), ms);
    let done = false;
    function finish(f: () => void) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      f();
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => finish(() => resolve(v)),
      (e: unknown) => finish(() => reject(e)),
    );
  });
}

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Policy = NonNullable<FaultHandling['global']>;
type PolicyFn<T> = (ctx: { signal: AbortSignal }) => PromiseLike<T> | T;

/** A cockatiel policy (the shape etcd3 calls; cockatiel is only a transitive dependency). */
function policy(execute: <T>(fn: PolicyFn<T>) => Promise<T>): Policy {
  return { execute, onSuccess: () => ({ dispose: () => undefined }), onFailure: () => ({ dispose: () => undefined }) } as unknown as Policy;
}

/** Calls straight through: retries are the Caller's. */
const passThroughPolicy = policy((fn) => Promise.resolve().then(() => fn({ signal: new AbortController().signal })));

/** How long a member whose call just failed is passed over, while another member has not failed. */
export const MEMBER_COOLDOWN_MS = 2000;

/** A member passed over for now: etcd3 goes on to the next member, and the Caller may retry. */
class MemberPassedOver extends Error {
  readonly [RecoverableError] = true;
  constructor(host: string) {
    super(`14 UNAVAILABLE: etcd member ${host} failed a call less than ${MEMBER_COOLDOWN_MS} ms ago`);
  }
}

/**
 * Which members of one store's client failed a call lately. etcd3 picks a member at random for
 * each call and, with the pass-through policies, sticks to it; a member that restarts or hangs
 * then fails a share of all calls (with two calls per agent cycle, most cycles) although the other
 * members answer. A member that failed in the last MEMBER_COOLDOWN_MS is passed over while
 * another has not failed: never all of them, so a one-member cluster, or every member failing,
 * changes nothing, and a member that is back is tried again once its cooldown ends.
 */
export class MemberHealth {
  private readonly hosts: string[] = [];
  private readonly failedAt = new Map<string, number>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  add(host: string): void {
    if (!this.hosts.includes(host)) this.hosts.push(host);
  }

  failed(host: string): void {
    this.failedAt.set(host, this.now());
  }

  succeeded(host: string): void {
    this.failedAt.delete(host);
  }

  private cooling(host: string): boolean {
    const at = this.failedAt.get(host);
    return at !== undefined && this.now() - at < MEMBER_COOLDOWN_MS;
  }

  /** `host` failed lately and some other member has not. */
  passOver(host: string): boolean {
    return this.cooling(host) && this.hosts.some((h) => h !== host && !this.cooling(h));
  }

  /** etcd3's per-member policy: passes the member over, or calls through and records the outcome. */
  policyFor(host: string): Policy {
    this.add(host);
    return policy(async (fn) => {
      if (this.passOver(host)) throw new MemberPassedOver(host);
      try {
        const result = await fn({ signal: new AbortController().signal });
        this.succeeded(host);
        return result;
      } catch (err) {
        // Network and server trouble (unavailable, deadline), not an answer such as a failed compare.
        if (err instanceof Error && isRecoverableError(castGrpcError(err))) this.failed(host);
        throw err;
      }
    });
  }
}

/**
 * Watch streams reconnect after 100 ms, doubling up to 2 s: etcd3's default grows to 30 s, so an
 * agent could miss a minute of changes after a short etcd outage.
 */
function watchBackoff(delayMs = 100): { duration: number; next(): ReturnType<typeof watchBackoff> } {
  return { duration: delayMs, next: () => watchBackoff(Math.min(delayMs * 2, 2000)) };
}

/** etcd3's fault handling for one client: no retries of its own, members that just failed passed over. */
export function faultHandling(health = new MemberHealth()): FaultHandling {
  return {
    host: (host: string) => health.policyFor(host),
    global: passThroughPolicy,
    watchBackoff: { next: () => watchBackoff() } as unknown as FaultHandling['watchBackoff'],
  };
}
