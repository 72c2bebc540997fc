/**
 * Patroni's REST API, for every part of Vigil that asks it: the observer (who is primary, the
 * planned switchover, each member's state for the leader release), the agent (its member's role
 * and lag, its Patroni's liveness), apply, doctor, the lab and its tests. This module owns the
 * URLs, the methods, the basic auth of write actions and what Patroni's answers mean; it does not
 * own deadlines (each caller passes its own) nor what to do when Patroni does not answer.
 *
 * Every call has a deadline (`timeoutMs`) and may be cancelled (`signal`); a call that gets no
 * usable answer rejects with a PatroniError whose code says why. The REST password is sent in a
 * header only, and never appears in an error or a log line.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { PATRONI_REST_USER } from '../layout/network.ts';
import { mtlsFetch, NetError, type MtlsIdentity } from '../mtls/mtls.ts';
import { UNITS } from '../layout/units.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface PatroniCallOptions {
  /** Deadline of the whole exchange: connect, request, answer and body. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export type PatroniErrorCode = 'PATRONI_UNREACHABLE' | 'PATRONI_TIMEOUT' | 'PATRONI_HTTP' | 'PATRONI_ANSWER' | 'PATRONI_CANCELLED';

/** A Patroni call that got no usable answer: which member, which call, and (for PATRONI_HTTP) what Patroni said. */
export class PatroniError extends VigilError {
  declare readonly code: PatroniErrorCode;
  /** The URL asked, e.g. https://10.0.0.21:8008/cluster (never carries credentials). */
  readonly url: string;
  /** The HTTP status Patroni answered with (PATRONI_HTTP, PATRONI_ANSWER). */
  readonly status: number | undefined;
  /** The start of Patroni's answer (PATRONI_HTTP, PATRONI_ANSWER). */
  readonly answer: string | undefined;

  constructor(code: PatroniErrorCode, url: string, message: string, fix: string, opts: { cause?: unknown; status?: number; answer?: string } = {}) {
    super(code, [problem(`Patroni ${url}`, message, fix)], {
      cause: opts.cause,
      retryable: code === 'PATRONI_UNREACHABLE' || code === 'PATRONI_TIMEOUT' || (code === 'PATRONI_HTTP' && opts.status === 503),
    });
    this.name = 'PatroniError';
    this.url = url;
    this.status = opts.status;
    this.answer = opts.answer;
  }
}

/** One HTTP exchange with a member's REST API. */
export interface PatroniRequest {
  method: 'GET' | 'OPTIONS' | 'POST' | 'PATCH';
  url: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface PatroniAnswer {
  status: number;
  body: string;
}

/**
 * Carries one request and resolves with any HTTP status; rejects with a PatroniError when nothing
 * answered. The default one asks from this process; apply asks from a machine of the cluster
 * (src/apply/remote.ts).
 */
export type PatroniTransport = (req: PatroniRequest) => Promise<PatroniAnswer>;

const CHECK_PATRONI = (url: string) =>
  `check that Patroni runs there and that this machine reaches ${new URL(url).host} (\`systemctl status ${UNITS.patroni}\` on the member)`;

/**
 * HTTPS from this process, trusting the cluster CA only and presenting `identity` (Patroni's REST
 * API speaks TLS, src/render/patroni.ts): a read needs the CA alone, a write the certificate too.
 * The member's certificate must name the address asked. A TLS failure (another CA, a certificate
 * that does not name the member) is PATRONI_UNREACHABLE with the reason, never a plain retry.
 */
export function tlsTransport(identity: MtlsIdentity): PatroniTransport {
  return async (req) => {
    try {
      const r = await mtlsFetch(req.url, {
        ...identity,
        method: req.method,
        headers: req.headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        timeoutMs: req.timeoutMs,
        ...(req.signal ? { signal: req.signal } : {}),
        maxBytes: 4 * 1024 * 1024,
      });
      return { status: r.status, body: r.text };
    } catch (err) {
      if (!(err instanceof NetError)) throw err;
      if (err.kind === 'timeout')
        throw new PatroniError('PATRONI_TIMEOUT', req.url, `no answer within ${req.timeoutMs} ms`, CHECK_PATRONI(req.url), { cause: err });
      if (err.kind === 'aborted') throw new PatroniError('PATRONI_CANCELLED', req.url, 'cancelled by the caller', 'none needed', { cause: err });
      const fix =
        err.kind === 'tls'
          ? `the member's REST API certificate is not one the cluster CA issued for ${new URL(req.url).hostname}, or this side has no certificate from it: run \`vigil apply\` (it issues /etc/vigil/tls/patroni-rest.pem)`
          : CHECK_PATRONI(req.url);
      throw new PatroniError('PATRONI_UNREACHABLE', req.url, `no answer: ${err.message}`, fix, { cause: err });
    }
  };
}

/**
 * Patroni's health checks that Vigil reads by status alone. Patroni answers 200 when the check
 * holds and 503 when it does not.
 * - `primary`: this member runs PostgreSQL as primary and holds the leader lock. Asked with
 *   OPTIONS, which Patroni answers with the same status as GET and no body.
 * - `replica`: this member runs as a replica (state running, no noloadbalance tag). OPTIONS too.
 * - `liveness`: Patroni's heartbeat loop runs. GET: it has its own handler, while OPTIONS on it
 *   falls through to the generic status check.
 */
export type PatroniCheck = 'primary' | 'replica' | 'liveness';
const CHECK_METHOD: Record<PatroniCheck, 'GET' | 'OPTIONS'> = { primary: 'OPTIONS', replica: 'OPTIONS', liveness: 'GET' };

/** A member as GET /cluster lists it. */
export interface PatroniClusterMember {
  name: string;
  /** "leader", "replica", "sync_standby" (Patroni 3; older ones say "master"), ... */
  role: string;
  /** "running", "streaming", "stopped", "starting", ... */
  state: string;
  /** Bytes behind the leader; a string ("unknown") when Patroni cannot tell; absent on the leader. */
  lag?: number | string;
}

/** GET /cluster: Patroni's view of every member, as seen from the member asked. */
export interface PatroniCluster {
  members: PatroniClusterMember[];
  /** Maintenance mode (`patronictl pause`). */
  paused: boolean;
}

/** GET /patroni: the member asked, about itself. Fields Patroni did not send are absent. */
export interface PatroniMemberStatus {
  role?: string;
  state?: string;
  /** Patroni's own version, e.g. "3.0.2". */
  version?: string;
  /** A replica: commit time (ISO) of the last transaction it replayed (`xlog.replayed_timestamp`). */
  replayedAt?: string;
}

/** GET /config: the dynamic configuration Patroni keeps in etcd (only what Vigil reads). */
export interface PatroniDynamicConfig {
  synchronousMode: boolean;
  /** DCS failsafe mode (src/render/patroni.ts): the primary rides out an etcd outage. */
  failsafeMode: boolean;
}

export interface PatroniClientOptions {
  /** The member's REST API: its machine's address and `database.patroniPort`. */
  address: string;
  port: number;
  /** `secrets.patroniRestPassword`; only write actions need it. */
  password?: string;
  /**
   * The cluster CA and this side's certificate: the REST API is HTTPS (src/render/patroni.ts),
   * verified against the CA; a write also needs the certificate. Either this or `transport`.
   */
  identity?: MtlsIdentity;
  /** How each request travels when not from this process: apply asks from a machine of the cluster (src/apply/remote.ts). */
  transport?: PatroniTransport;
}

/** One member's REST API. Cheap to make: it holds no connection. */
export class PatroniClient {
  readonly baseUrl: string;
  private readonly password: string | undefined;
  private readonly transport: PatroniTransport;

  constructor(o: PatroniClientOptions) {
    this.baseUrl = `https://${o.address}:${o.port}`;
    this.password = o.password;
    const transport = o.transport ?? (o.identity ? tlsTransport(o.identity) : undefined);
    if (!transport) throw new Error('PatroniClient needs the cluster identity (Patroni speaks TLS) or a transport');
    this.transport = transport;
  }

  /** Whether `check` holds on this member (200); false for any other status. Rejects only when nothing answered. */
  async check(check: PatroniCheck, o: PatroniCallOptions): Promise<boolean> {
    const r = await this.call(CHECK_METHOD[check], `/${check}`, o, { anyStatus: true });
    return r.status === 200;
  }

  /** GET /cluster. */
  async cluster(o: PatroniCallOptions): Promise<PatroniCluster> {
    const { url, body } = await this.json('/cluster', o);
    const members = (body as { members?: unknown }).members ?? [];
    if (!Array.isArray(members)) throw this.badAnswer(url, 'its `members` is not a list', JSON.stringify(body));
    const list: PatroniClusterMember[] = [];
    for (const m of members as Record<string, unknown>[]) {
      if (typeof m?.name !== 'string') throw this.badAnswer(url, 'a member has no name', JSON.stringify(m));
      list.push({
        name: m.name,
        role: typeof m.role === 'string' ? m.role : 'unknown',
        state: typeof m.state === 'string' ? m.state : 'unknown',
        ...(typeof m.lag === 'number' || typeof m.lag === 'string' ? { lag: m.lag } : {}),
      });
    }
    return { members: list, paused: (body as { pause?: unknown }).pause === true };
  }

  /** GET /patroni. */
  async status(o: PatroniCallOptions): Promise<PatroniMemberStatus> {
    const { body } = await this.json('/patroni', o);
    const b = body as { role?: unknown; state?: unknown; patroni?: { version?: unknown }; xlog?: { replayed_timestamp?: unknown } };
    return {
      ...(typeof b.role === 'string' ? { role: b.role } : {}),
      ...(typeof b.state === 'string' ? { state: b.state } : {}),
      ...(typeof b.patroni?.version === 'string' ? { version: b.patroni.version } : {}),
      ...(typeof b.xlog?.replayed_timestamp === 'string' ? { replayedAt: b.xlog.replayed_timestamp } : {}),
    };
  }

  /**
   * GET /history: the cluster's timeline switches, oldest first. Each entry Patroni keeps is
   * `[timeline, lsn, reason, timestamp, new leader]`; the last two are absent in entries older
   * than Patroni 1.6 or written by PostgreSQL alone.
   */
  async history(o: PatroniCallOptions): Promise<PatroniHistoryEntry[]> {
    const r = await this.call('GET', '/history', o);
    let body: unknown;
    try {
      body = JSON.parse(r.body);
    } catch (err) {
      throw this.badAnswer(r.url, 'the answer is not JSON', r.body, err, r.status);
    }
    if (!Array.isArray(body)) throw this.badAnswer(r.url, 'the answer is not a list', r.body, undefined, r.status);
    const out: PatroniHistoryEntry[] = [];
    for (const e of body as unknown[]) {
      if (!Array.isArray(e) || typeof e[0] !== 'number') throw this.badAnswer(r.url, 'an entry is not [timeline, lsn, reason, ...]', JSON.stringify(e));
      out.push({
        timeline: e[0],
        lsn: typeof e[1] === 'number' ? e[1] : null,
        reason: typeof e[2] === 'string' ? e[2] : '',
        at: typeof e[3] === 'string' ? e[3] : null,
        newLeader: typeof e[4] === 'string' ? e[4] : null,
      });
    }
    return out;
  }

  /** GET /config. */
  async config(o: PatroniCallOptions): Promise<PatroniDynamicConfig> {
    const { body } = await this.json('/config', o);
    const b = body as { synchronous_mode?: unknown; failsafe_mode?: unknown };
    return { synchronousMode: b.synchronous_mode === true, failsafeMode: b.failsafe_mode === true };
  }

  /**
   * POST /switchover: the leader hands over to the candidate once it has caught up. Patroni
   * answers only when it is done (seconds) or has given up; 200 means done. A refusal (412: the
   * candidate is not healthy or not synchronous; 503: it failed; 401: wrong password) rejects
   * with PATRONI_HTTP carrying Patroni's answer.
   */
  async switchover(to: { leader: string; candidate: string }, o: PatroniCallOptions): Promise<{ status: number; answer: string }> {
    if (this.password === undefined) throw new Error('PatroniClient.switchover needs the REST password (secrets.patroniRestPassword)');
    // Basic auth (restapi.authentication in the generated patroni.yml, user PATRONI_REST_USER).
    const auth = Buffer.from(`${PATRONI_REST_USER}:${this.password}`).toString('base64');
    const r = await this.call('POST', '/switchover', o, {
      headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
      body: JSON.stringify(to),
    });
    return { status: r.status, answer: r.body };
  }

  /**
   * PATCH /config: turns DCS failsafe mode on or off in the dynamic configuration Patroni keeps in
   * etcd (the member writes it there, so it must reach etcd). Every member reads it in its next
   * loop. Rejects unless Patroni answers 2xx.
   */
  async setFailsafeMode(on: boolean, o: PatroniCallOptions): Promise<void> {
    if (this.password === undefined) throw new Error('PatroniClient.setFailsafeMode needs the REST password (secrets.patroniRestPassword)');
    const auth = Buffer.from(`${PATRONI_REST_USER}:${this.password}`).toString('base64');
    await this.call('PATCH', '/config', o, {
      headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
      body: JSON.stringify({ failsafe_mode: on }),
    });
  }

  /** One exchange; a status other than 2xx rejects unless `anyStatus`. */
  private async call(
    method: PatroniRequest['method'],
    path: string,
    o: PatroniCallOptions,
    x: { headers?: Record<string, string>; body?: string; anyStatus?: boolean } = {},
  ): Promise<PatroniAnswer & { url: string }> {
    const url = `${this.baseUrl}${path}`;
    if (o.signal?.aborted) throw new PatroniError('PATRONI_CANCELLED', url, 'cancelled by the caller', 'none needed');
    const r = await this.transport({
      method,
      url,
      headers: x.headers ?? {},
      ...(x.body !== undefined ? { body: x.body } : {}),
      timeoutMs: o.timeoutMs,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    if (!x.anyStatus && (r.status < 200 || r.status > 299)) {
      const answer = r.body.slice(0, 200);
      const fix =
        r.status === 401 ? 'the REST password in the secrets file differs from the one in patroni.yml on that machine: run `vigil apply`' : CHECK_PATRONI(url);
      throw new PatroniError('PATRONI_HTTP', url, `answered ${r.status}: ${answer}`, fix, { status: r.status, answer });
    }
    return { ...r, url };
  }

  private async json(path: string, o: PatroniCallOptions): Promise<{ url: string; body: object }> {
    const r = await this.call('GET', path, o);
    let body: unknown;
    try {
      body = JSON.parse(r.body);
    } catch (err) {
      throw this.badAnswer(r.url, 'the answer is not JSON', r.body, err, r.status);
    }
    if (typeof body !== 'object' || body === null) throw this.badAnswer(r.url, 'the answer is not a JSON object', r.body, undefined, r.status);
    return { url: r.url, body };
  }

  private badAnswer(url: string, why: string, text: string, cause?: unknown, status?: number): PatroniError {
    const answer = text.slice(0, 200);
    return new PatroniError(
      'PATRONI_ANSWER',
      url,
      `${why}: ${answer}`,
      'something other than Patroni answers on that port, or a Patroni Vigil does not know: check `patroni --version` there',
      { cause, answer, ...(status !== undefined ? { status } : {}) },
    );
  }
}

/** One timeline switch of the database (GET /history): the timeline that ended, where, why, when, and who led after it. */
export interface PatroniHistoryEntry {
  timeline: number;
  lsn: number | null;
  reason: string;
  /** ISO time of the switch, as Patroni wrote it; null when Patroni did not. */
  at: string | null;
  newLeader: string | null;
}

/** The client for `machine`'s member, on the cluster's Patroni port. */
export function patroniOf(
  cluster: Cluster,
  machine: Pick<Machine, 'address'>,
  o: { password?: string } & ({ identity: MtlsIdentity } | { transport: PatroniTransport }),
): PatroniClient {
  return new PatroniClient({ address: machine.address, port: cluster.database.patroniPort, ...o });
}
