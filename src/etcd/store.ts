/**
 * Vigil's view of etcd: the few keys under `/vigil/<cluster>/` (src/model/ha.ts) and the
 * operations the observer, the agents and the CLI need on them. etcd3's types stay inside
 * src/etcd; callers see records, revisions as strings, booleans and StoreError.
 *
 * Every call has a deadline (`timeoutMs`, default `callTimeoutMs`) and an optional AbortSignal.
 * Reads are linearizable (served through the etcd leader): a member cut off from the quorum
 * cannot answer with stale data. Conditional writes are transactions on a key's revision; when
 * a write is retried after a lost answer, a value equal to ours counts as our own success, so a
 * retry never reports "someone else wrote first" about our own write.
 *
 * ```ts
 * const store = await openStore({ endpoints: ['https://10.0.0.10:2379'], cluster: 'prod', tls: storeTls(await loadPki()) });
 * const cur = await store.getActive();
 * const ok = await store.casActive({ node: 'app2', epoch: (cur?.record.epoch ?? 0) + 1, since, reason: 'failover' }, cur, { leader });
 * ```
 */
import { Etcd3, type Namespace } from 'etcd3';
import {
  KEYS,
  keyPrefix,
  type ActiveRecord,
  type AirgapRecord,
  type DoctorRun,
  type Maintenance,
  type ObserverLeader,
  type ObserverState,
  type OperatorRequest,
  type RequestAnswer,
  type ServingClaim,
} from '../model/ha.ts';
import { badData, Caller, faultHandling, type CallOptions, type StoreError } from './call.ts';
import { eventRecords, type EventRecords } from './events.ts';
import { follow, type Subscription } from './follow.ts';
import { Campaign, type Leadership } from './leadership.ts';
import { decode, encode, schemas } from './records.ts';
import { Hold, readClaims, type ServingHold } from './serving.ts';

export { StoreError, STORE_ERROR_CODES, type StoreErrorCode, type CallOptions } from './call.ts';
export type { Leadership } from './leadership.ts';
export type { Subscription } from './follow.ts';
export type { ServingHold } from './serving.ts';
export { EVENTS_SEQ_KEY, eventKey, type EventRecords, type StoredEvent } from './events.ts';

/** The largest doctor report kept (bytes of JSON); etcd refuses requests over 1.5 MiB. */
export const MAX_DOCTOR_RUN_BYTES = 1024 * 1024;

export interface StoreOptions {
  /** Client URLs, e.g. `https://10.0.0.10:2379` (all http or all https; clusters' etcd is https only). */
  endpoints: string[];
  cluster: string;
  /** How long openStore waits for a first answer from etcd. Default 5000. */
  dialTimeoutMs?: number;
  /** Deadline of a call that sets none. Default 5000. */
  callTimeoutMs?: number;
  auth?: { username: string; password: string };
  /** PEM buffers; needed when the endpoints are https. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

/** A record with the mod revision of its key, to pass back to a compare-and-swap. */
export interface Versioned<T> {
  record: T;
  revision: string;
}

export interface ActiveConfirmation {
  record: ActiveRecord | null;
  /** Every app machine's claim to run the application, read with the record (src/etcd/serving.ts). */
  claims: ServingClaim[];
  /** performance.now() when the read was sent: the confirmation holds from then, not from the answer. */
  sentAtMs: number;
}

export interface VigilStore {
  readonly cluster: string;
  readonly endpoints: readonly string[];

  getActive(opts?: CallOptions): Promise<Versioned<ActiveRecord> | null>;
  /**
   * Writes `next` only if the key is still at `expect.revision` (or absent, for null) and, with
   * `leader`, only while that leadership holds the leader key (its create revision is compared
   * in the same transaction: a deposed observer cannot write). False when the condition failed.
   */
  casActive(next: ActiveRecord, expect: { revision: string } | null, opts?: CallOptions & { leader?: Leadership }): Promise<boolean>;
  /** Calls `onChange` with the current record, then on every change, in order and without gaps. */
  watchActive(onChange: (r: ActiveRecord | null) => void, opts?: CallOptions & { onError?: (err: StoreError) => void }): Promise<Subscription>;
  /**
   * A linearizable read of the record and of the app machines' claims within `timeoutMs`, for
   * self-fencing and handover; throws StoreError (ETCD_TIMEOUT, ...) if none.
   */
  confirmActive(timeoutMs: number, opts?: { signal?: AbortSignal }): Promise<ActiveConfirmation>;
  /**
   * This app machine's claim to run the application, under a lease of `ttlSeconds` that the
   * agent keeps alive (src/etcd/serving.ts). One per agent process.
   */
  servingHold(node: string, ttlSeconds: number): ServingHold;

  getMaintenance(opts?: CallOptions): Promise<Maintenance | null>;
  /** The last air-gap bundle the cluster accepted, with its revision for casAirgap. */
  getAirgap(opts?: CallOptions): Promise<Versioned<AirgapRecord> | null>;
  /** Writes the record only if the key is still at `expect.revision` (absent, for null); false when it moved. */
  casAirgap(next: AirgapRecord, expect: { revision: string } | null, opts?: CallOptions): Promise<boolean>;
  /**
   * The active record, the maintenance flag and the pending request in one round trip, at one
   * revision: what the observer reads every tick (three reads were three gRPC calls).
   */
  readObserved(opts?: CallOptions): Promise<{ active: Versioned<ActiveRecord> | null; maintenance: Maintenance | null; request: OperatorRequest | null }>;
  setMaintenance(m: Maintenance, opts?: CallOptions): Promise<void>;
  /** True if maintenance was on. */
  clearMaintenance(opts?: CallOptions): Promise<boolean>;

  /** Stores the request unless one is pending; false if one is. */
  putRequest(r: OperatorRequest, opts?: CallOptions): Promise<boolean>;
  getRequest(opts?: CallOptions): Promise<OperatorRequest | null>;
  /** Deletes the pending request (only if its id is `id`, when given). True if one was deleted. */
  clearRequest(id?: string, opts?: CallOptions): Promise<boolean>;
  /**
   * Removes the pending request `answer.id` and stores the answer, in one transaction: whoever
   * sees the request gone finds its answer. False (nothing written) if that request is not pending.
   */
  answerRequest(answer: RequestAnswer, opts?: CallOptions): Promise<boolean>;
  getRequestAnswer(opts?: CallOptions): Promise<RequestAnswer | null>;

  /** Campaigns for observer leadership; resolves after the first attempt, leader or not. */
  campaign(id: string, host: string, ttlSeconds: number, opts?: CallOptions): Promise<Leadership>;
  currentLeader(opts?: CallOptions): Promise<ObserverLeader | null>;
  /**
   * Writes the acting observer's state under its leader lease, only while `leader` holds the
   * leader key (so it disappears with the lead, and a deposed observer cannot write it). False
   * when not leading.
   */
  putObserverState(s: ObserverState, opts: CallOptions & { leader: Leadership }): Promise<boolean>;
  /** The acting observer's state, or null when no observer leads (or it has not written yet). */
  getObserverState(opts?: CallOptions): Promise<ObserverState | null>;

  /**
   * Patroni's view of the database tier, read once (no retry) within `timeoutMs`: who holds the
   * leader key and whether Patroni's maintenance mode (`pause`) is on. For the agent's fence of a
   * stale primary; throws StoreError when etcd cannot answer.
   */
  readPatroni(scope: string, timeoutMs: number): Promise<PatroniView>;

  /** Patroni's leader key with its lease, and its `sync` key (the observer's leader release, src/observer/db-release.ts). */
  readPatroniLeader(scope: string, timeoutMs: number): Promise<PatroniLeaderView>;

  /**
   * Revokes an etcd lease: every key attached to it goes at once. Only ever a lease read from
   * Patroni's leader key: a new leader's key has a lease of its own, which this cannot touch.
   * False when etcd no longer knows the lease (it expired or was revoked already).
   */
  revokeLease(leaseId: string, timeoutMs: number): Promise<boolean>;

  /** Keeps `run` as the last doctor report of its source, replacing the one before; refuses one over 1 MiB (etcd's requests stop at 1.5). */
  putDoctorRun(run: DoctorRun, opts?: CallOptions): Promise<void>;
  /** The last doctor report of each source that stored one. */
  getDoctorRuns(opts?: CallOptions): Promise<DoctorRun[]>;

  /** The `events/` keys; use EventLog (src/events/log.ts) rather than this directly. */
  readonly events: EventRecords;

  /** Resigns running campaigns (briefly, best effort), stops watches, closes connections. */
  close(): Promise<void>;
}

export interface PatroniView {
  /** The member named in Patroni's leader key, or null when no member holds it. */
  leader: string | null;
  /** Patroni's maintenance mode (`patronictl pause`): Patroni leaves PostgreSQL alone. */
  paused: boolean;
  /** performance.now() when the read was sent. */
  sentAtMs: number;
}

export interface PatroniLeaderView extends PatroniView {
  /** The leader key's lease (decimal, as etcd gives it), or null without a leader key or lease. */
  lease: string | null;
  /** The leader key's mod revision: a renewal of the same leader changes it. */
  modRevision: string | null;
  /** Patroni's `sync` key: the primary it was written by, and its synchronous standbys. */
  sync: { leader: string | null; standbys: string[] } | null;
  /** Each member's Patroni version, from its member key (there while the member's lease lives). */
  versions: Record<string, string>;
}

/**
 * A client's TLS for etcd from an identity loaded with src/pki `loadPki` (a machine's own, or
 * the admin's): the cluster CA to verify the member, and the certificate etcd asks for
 * (`client-cert-auth`, src/render/etcd.ts).
 */
export function storeTls(pki: { ca: string; cert: string; key: string }): NonNullable<StoreOptions['tls']> {
  return { ca: Buffer.from(pki.ca), cert: Buffer.from(pki.cert), key: Buffer.from(pki.key) };
}

let ipServernameQuiet = false;
/**
 * grpc-js puts the endpoint's host in the TLS handshake's server name even when it is an IP
 * address, and node warns about that once per process (DEP0123) on stderr: in every command's
 * output, for nothing the operator can act on (the member's certificate is still checked against
 * the address in its SAN). Drops that one warning, and only it.
 */
function quietIpServername(): void {
  if (ipServernameQuiet) return;
  ipServernameQuiet = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [, typeOrOptions, code] = args;
    const c = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: unknown }).code : code;
    if (c === 'DEP0123') return;
    emit(...args);
  }) as typeof process.emitWarning;
}

/** Connects and checks that etcd answers within `dialTimeoutMs` (throws a retryable StoreError if not). */
export async function openStore(opts: StoreOptions): Promise<VigilStore> {
  if (opts.endpoints.length === 0) throw new RangeError('openStore: no etcd endpoints');
  // Without credentials the client would speak plain gRPC to a TLS port and only time out.
  if (opts.endpoints.some((e) => e.startsWith('https:')) && !opts.tls?.cert)
    throw new RangeError('openStore: https endpoints need tls (the cluster CA, and a client certificate and key: storeTls)');
  if (opts.tls) quietIpServername();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(opts.cluster)) throw new RangeError(`openStore: invalid cluster name ${JSON.stringify(opts.cluster)}`);
  const client = new Etcd3({
    hosts: opts.endpoints,
    ...(opts.auth ? { auth: opts.auth } : {}),
    ...(opts.tls
      ? {
          credentials: {
            rootCertificate: opts.tls.ca,
            ...(opts.tls.key ? { privateKey: opts.tls.key } : {}),
            ...(opts.tls.cert ? { certChain: opts.tls.cert } : {}),
          },
        }
      : {}),
    faultHandling: faultHandling(),
    // Notice a dead connection (a hung member) on idle watch streams too; etcd's minimum ping
    // interval is 5 s (--grpc-keepalive-min-time), pinging faster gets the connection closed.
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 },
  });
  const store = new Store(client, opts);
  try {
    await store.ping(opts.dialTimeoutMs ?? 5000);
  } catch (err) {
    client.close();
    throw err;
  }
  return store;
}

class Store implements VigilStore {
  readonly cluster: string;
  readonly endpoints: readonly string[];
  readonly events: EventRecords;
  private readonly ns: Namespace;
  private readonly caller: Caller;
  private readonly campaigns = new Set<Campaign>();
  private readonly subs = new Set<Subscription>();

  constructor(
    private readonly client: Etcd3,
    opts: StoreOptions,
  ) {
    this.cluster = opts.cluster;
    this.endpoints = [...opts.endpoints];
    this.ns = client.namespace(keyPrefix(opts.cluster));
    this.caller = new Caller([...opts.endpoints], opts.callTimeoutMs ?? 5000);
    this.events = eventRecords(this.ns, this.caller, (sub) => this.track(sub));
  }

  /** Any answer will do: reachability only (a bad value in a key must not stop openStore). */
  async ping(timeoutMs: number): Promise<void> {
    await this.caller.run('connect', { timeoutMs }, (grpc) => this.ns.get(KEYS.maintenance).options(grpc).exists());
  }

  async getActive(opts?: CallOptions): Promise<Versioned<ActiveRecord> | null> {
    const res = await this.caller.run('getActive', opts, (grpc) => this.ns.get(KEYS.active).options(grpc).exec());
    const kv = res.kvs[0];
    return kv ? { record: decode(schemas.active, 'getActive', this.full(KEYS.active), kv.value), revision: kv.mod_revision } : null;
  }

  async casActive(next: ActiveRecord, expect: { revision: string } | null, opts?: CallOptions & { leader?: Leadership }): Promise<boolean> {
    const value = encode(schemas.active, 'casActive', this.full(KEYS.active), next);
    let fence: { key: string; createRevision: string } | null = null;
    if (opts?.leader) {
      if (!(opts.leader instanceof Campaign)) throw new TypeError('casActive: leader must come from this store’s campaign()');
      fence = opts.leader.fence();
      if (!fence) return false; // not leading (or no longer sure of it): do not even try
    }
    const f = fence;
    const txn = await this.caller.run('casActive', opts, (grpc) => {
      const t = expect ? this.ns.if(KEYS.active, 'Mod', '==', expect.revision) : this.ns.if(KEYS.active, 'Create', '==', 0);
      if (f) t.and(f.key, 'Create', '==', f.createRevision);
      return t.then(this.ns.put(KEYS.active).value(value)).else(this.ns.get(KEYS.active)).options(grpc).commit();
    });
    if (txn.succeeded) return true;
    // Equal bytes: our own earlier try went through (records carry their `since`, so another
    // writer producing the same bytes is not a practical case).
    return txn.responses[0]?.response_range?.kvs[0]?.value.toString() === value;
  }

  async watchActive(onChange: (r: ActiveRecord | null) => void, opts?: CallOptions & { onError?: (err: StoreError) => void }): Promise<Subscription> {
    const key = this.full(KEYS.active);
    let lastRevision: string | null | undefined; // undefined: nothing delivered yet; null: absent
    const deliver = (revision: string | null, value: Buffer | null) => {
      if (revision === lastRevision) return; // the same version again after a resync
      const record = value ? decode(schemas.active, 'watchActive', key, value) : null;
      lastRevision = revision;
      onChange(record);
    };
    const sub = await follow(
      this.ns,
      this.caller,
      {
        op: 'watchActive',
        watch: { key: KEYS.active },
        catchUp: async (grpc) => {
          const res = await this.ns.get(KEYS.active).options(grpc).exec();
          const kv = res.kvs[0];
          deliver(kv ? kv.mod_revision : null, kv ? kv.value : null);
          return res.header.revision;
        },
        onPut: (kv) => deliver(kv.mod_revision, kv.value),
        onDelete: () => deliver(null, null),
        ...(opts?.onError ? { onError: opts.onError } : {}),
      },
      opts,
    );
    return this.track(sub);
  }

  async confirmActive(timeoutMs: number, opts?: { signal?: AbortSignal }): Promise<ActiveConfirmation> {
    const sentAtMs = performance.now();
    // Retried within the deadline (on another member, when one fails): the confirmation counts
    // from sentAtMs, before the first try, so a read that a retry made later only shortens it.
    const [res, claims] = await this.caller.run('confirmActive', { timeoutMs, ...opts }, (grpc) =>
      Promise.all([this.ns.get(KEYS.active).options(grpc).exec(), readClaims(this.ns, keyPrefix(this.cluster), grpc)]),
    );
    const kv = res.kvs[0];
    return { record: kv ? decode(schemas.active, 'confirmActive', this.full(KEYS.active), kv.value) : null, claims, sentAtMs };
  }

  servingHold(node: string, ttlSeconds: number): ServingHold {
    return new Hold({ client: this.client, ns: this.ns, caller: this.caller, prefix: keyPrefix(this.cluster) }, node, ttlSeconds);
  }

  async getAirgap(opts?: CallOptions): Promise<Versioned<AirgapRecord> | null> {
    const res = await this.caller.run('getAirgap', opts, (grpc) => this.ns.get(KEYS.airgap).options(grpc).exec());
    const kv = res.kvs[0];
    return kv ? { record: decode(schemas.airgap, 'getAirgap', this.full(KEYS.airgap), kv.value), revision: kv.mod_revision } : null;
  }

  async casAirgap(next: AirgapRecord, expect: { revision: string } | null, opts?: CallOptions): Promise<boolean> {
    const value = encode(schemas.airgap, 'casAirgap', this.full(KEYS.airgap), next);
    const txn = await this.caller.run('casAirgap', opts, (grpc) => {
      const t = expect ? this.ns.if(KEYS.airgap, 'Mod', '==', expect.revision) : this.ns.if(KEYS.airgap, 'Create', '==', 0);
      return t.then(this.ns.put(KEYS.airgap).value(value)).else(this.ns.get(KEYS.airgap)).options(grpc).commit();
    });
    return txn.succeeded || txn.responses[0]?.response_range?.kvs[0]?.value.toString() === value;
  }

  async getMaintenance(opts?: CallOptions): Promise<Maintenance | null> {
    const v = await this.caller.run('getMaintenance', opts, (grpc) => this.ns.get(KEYS.maintenance).options(grpc).buffer());
    return v ? decode(schemas.maintenance, 'getMaintenance', this.full(KEYS.maintenance), v) : null;
  }

  async setMaintenance(m: Maintenance, opts?: CallOptions): Promise<void> {
    const value = encode(schemas.maintenance, 'setMaintenance', this.full(KEYS.maintenance), m);
    await this.caller.run('setMaintenance', opts, (grpc) => this.ns.put(KEYS.maintenance).value(value).options(grpc).exec());
  }

  async clearMaintenance(opts?: CallOptions): Promise<boolean> {
    const res = await this.caller.run('clearMaintenance', opts, (grpc) => this.ns.delete().key(KEYS.maintenance).options(grpc).exec());
    return Number(res.deleted) > 0;
  }

  async putDoctorRun(run: DoctorRun, opts?: CallOptions): Promise<void> {
    const key = `${KEYS.doctorPrefix}${run.source}`;
    const value = encode(schemas.doctorRun, 'putDoctorRun', this.full(key), run);
    if (Buffer.byteLength(value) > MAX_DOCTOR_RUN_BYTES)
      throw badData(
        'putDoctorRun',
        this.full(key),
        `the report is ${Buffer.byteLength(value)} bytes, over the ${MAX_DOCTOR_RUN_BYTES} kept`,
        'nothing was stored; the report itself is complete (vigil doctor --json)',
      );
    await this.caller.run('putDoctorRun', opts, (grpc) => this.ns.put(key).value(value).options(grpc).exec());
  }

  async getDoctorRuns(opts?: CallOptions): Promise<DoctorRun[]> {
    const res = await this.caller.run('getDoctorRuns', opts, (grpc) => this.ns.getAll().prefix(KEYS.doctorPrefix).options(grpc).exec());
    return res.kvs.map((kv) => decode(schemas.doctorRun, 'getDoctorRuns', this.full(kv.key.toString()), kv.value));
  }

  async putRequest(r: OperatorRequest, opts?: CallOptions): Promise<boolean> {
    const value = encode(schemas.request, 'putRequest', this.full(KEYS.request), r);
    const txn = await this.caller.run('putRequest', opts, (grpc) =>
      this.ns.if(KEYS.request, 'Create', '==', 0).then(this.ns.put(KEYS.request).value(value)).else(this.ns.get(KEYS.request)).options(grpc).commit(),
    );
    if (txn.succeeded) return true;
    return txn.responses[0]?.response_range?.kvs[0]?.value.toString() === value; // our own earlier try
  }

  async readObserved(
    opts?: CallOptions,
  ): Promise<{ active: Versioned<ActiveRecord> | null; maintenance: Maintenance | null; request: OperatorRequest | null }> {
    // A transaction whose condition always holds: etcd compares a missing key's revisions as 0.
    const txn = await this.caller.run('readObserved', opts, (grpc) =>
      this.ns.if(KEYS.active, 'Mod', '>', -1).then(this.ns.get(KEYS.active), this.ns.get(KEYS.maintenance), this.ns.get(KEYS.request)).options(grpc).commit(),
    );
    if (!txn.succeeded) throw new Error('readObserved: etcd refused a condition that always holds');
    const [a, m, r] = txn.responses.map((x) => x.response_range?.kvs[0]);
    return {
      active: a ? { record: decode(schemas.active, 'readObserved', this.full(KEYS.active), a.value), revision: a.mod_revision } : null,
      maintenance: m ? decode(schemas.maintenance, 'readObserved', this.full(KEYS.maintenance), m.value) : null,
      request: r ? decode(schemas.request, 'readObserved', this.full(KEYS.request), r.value) : null,
    };
  }

  async getRequest(opts?: CallOptions): Promise<OperatorRequest | null> {
    const v = await this.caller.run('getRequest', opts, (grpc) => this.ns.get(KEYS.request).options(grpc).buffer());
    return v ? decode(schemas.request, 'getRequest', this.full(KEYS.request), v) : null;
  }

  async clearRequest(id?: string, opts?: CallOptions): Promise<boolean> {
    return this.caller.run('clearRequest', opts, async (grpc) => {
      if (id === undefined) return Number((await this.ns.delete().key(KEYS.request).options(grpc).exec()).deleted) > 0;
      // Only that request: a newer one put after it was read must survive.
      const res = await this.ns.get(KEYS.request).options(grpc).exec();
      const kv = res.kvs[0];
      if (!kv || decode(schemas.request, 'clearRequest', this.full(KEYS.request), kv.value).id !== id) return false;
      const txn = await this.ns.if(KEYS.request, 'Mod', '==', kv.mod_revision).then(this.ns.delete().key(KEYS.request)).options(grpc).commit();
      return txn.succeeded;
    });
  }

  async answerRequest(answer: RequestAnswer, opts?: CallOptions): Promise<boolean> {
    const value = encode(schemas.answer, 'answerRequest', this.full(KEYS.requestAnswer), answer);
    return this.caller.run('answerRequest', opts, async (grpc) => {
      const kv = (await this.ns.get(KEYS.request).options(grpc).exec()).kvs[0];
      if (!kv || decode(schemas.request, 'answerRequest', this.full(KEYS.request), kv.value).id !== answer.id) return false;
      const txn = await this.ns
        .if(KEYS.request, 'Mod', '==', kv.mod_revision)
        .then(this.ns.delete().key(KEYS.request), this.ns.put(KEYS.requestAnswer).value(value))
        .options(grpc)
        .commit();
      return txn.succeeded;
    });
  }

  async getRequestAnswer(opts?: CallOptions): Promise<RequestAnswer | null> {
    const v = await this.caller.run('getRequestAnswer', opts, (grpc) => this.ns.get(KEYS.requestAnswer).options(grpc).buffer());
    return v ? decode(schemas.answer, 'getRequestAnswer', this.full(KEYS.requestAnswer), v) : null;
  }

  async campaign(id: string, host: string, ttlSeconds: number, opts?: CallOptions): Promise<Leadership> {
    const c = new Campaign({ client: this.client, ns: this.ns, caller: this.caller }, id, host, ttlSeconds);
    await c.start(opts);
    this.campaigns.add(c);
    return c;
  }

  async currentLeader(opts?: CallOptions): Promise<ObserverLeader | null> {
    const v = await this.caller.run('currentLeader', opts, (grpc) => this.ns.get(KEYS.observerLeader).options(grpc).buffer());
    return v ? decode(schemas.leader, 'currentLeader', this.full(KEYS.observerLeader), v) : null;
  }

  async putObserverState(st: ObserverState, opts: CallOptions & { leader: Leadership }): Promise<boolean> {
    if (!(opts.leader instanceof Campaign)) throw new TypeError('putObserverState: leader must come from this store’s campaign()');
    const fence = opts.leader.fence();
    if (!fence) return false;
    const value = encode(schemas.observerState, 'putObserverState', this.full(KEYS.observerState), st);
    const txn = await this.caller.run('putObserverState', opts, (grpc) =>
      this.ns
        .if(fence.key, 'Create', '==', fence.createRevision)
        .then(this.ns.put(KEYS.observerState).value(value).lease(fence.leaseId))
        .options(grpc)
        .commit(),
    );
    return txn.succeeded;
  }

  async getObserverState(opts?: CallOptions): Promise<ObserverState | null> {
    const v = await this.caller.run('getObserverState', opts, (grpc) => this.ns.get(KEYS.observerState).options(grpc).buffer());
    return v ? decode(schemas.observerState, 'getObserverState', this.full(KEYS.observerState), v) : null;
  }

  async readPatroni(scope: string, timeoutMs: number): Promise<PatroniView> {
    const sentAtMs = performance.now();
    const prefix = `patroni/${scope}/`;
    const [leader, config] = await this.caller.run(
      'readPatroni',
      { timeoutMs },
      (grpc) => Promise.all([this.ns.get(`${prefix}leader`).options(grpc).string(), this.ns.get(`${prefix}config`).options(grpc).string()]),
      'once',
    );
    return { leader: leader || null, paused: patroniPaused(config), sentAtMs };
  }

  async readPatroniLeader(scope: string, timeoutMs: number): Promise<PatroniLeaderView> {
    const sentAtMs = performance.now();
    const prefix = `patroni/${scope}/`;
    // One round trip at one revision (the release loop reads this four times a second): a
    // transaction whose condition always holds (etcd compares a missing key's revisions as 0).
    const txn = await this.caller.run(
      'readPatroniLeader',
      { timeoutMs },
      (grpc) =>
        this.ns
          .if(`${prefix}leader`, 'Mod', '>', -1)
          .then(this.ns.get(`${prefix}leader`), this.ns.get(`${prefix}config`), this.ns.get(`${prefix}sync`), this.ns.getAll().prefix(`${prefix}members/`))
          .options(grpc)
          .commit(),
      'once',
    );
    if (!txn.succeeded) throw new Error('readPatroniLeader: etcd refused a condition that always holds');
    const ranges = txn.responses.map((x) => x.response_range?.kvs ?? []);
    const leader = { kvs: ranges[0] ?? [] };
    const config = ranges[1]?.[0]?.value.toString() ?? null;
    const sync = ranges[2]?.[0]?.value.toString() ?? null;
    const members = Object.fromEntries((ranges[3] ?? []).map((kv) => [kv.key.toString(), kv.value.toString()]));
    const kv = leader.kvs[0];
    const versions: Record<string, string> = {};
    for (const [key, value] of Object.entries(members)) {
      try {
        const v = (JSON.parse(value) as { version?: unknown }).version;
        if (typeof v === 'string') versions[key.slice(key.lastIndexOf('/') + 1)] = v;
      } catch {
        // Patroni writes these keys; one that is not JSON tells no version.
      }
    }
    return {
      leader: kv?.value.toString() || null,
      lease: kv && kv.lease !== '0' ? kv.lease : null,
      modRevision: kv?.mod_revision ?? null,
      paused: patroniPaused(config),
      sync: parseSync(sync),
      versions,
      sentAtMs,
    };
  }

  async revokeLease(leaseId: string, timeoutMs: number): Promise<boolean> {
    if (!/^[1-9]\d*$/.test(leaseId)) throw new RangeError(`revokeLease: not a lease id: ${JSON.stringify(leaseId)}`);
    try {
      await this.caller.run('revokeLease', { timeoutMs }, (grpc) => this.client.leaseClient.leaseRevoke({ ID: leaseId }, grpc), 'once');
      return true;
    } catch (err) {
      if (/requested lease not found/i.test(String((err as Error).message))) return false;
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.caller.closed) return;
    await Promise.all([...this.campaigns].map((c) => c.resign({ timeoutMs: 1000 }).catch(() => undefined)));
    await Promise.all([...this.subs].map((s) => s.close()));
    this.caller.closed = true;
    this.client.close();
  }

  private track(sub: Subscription): Subscription {
    this.subs.add(sub);
    return {
      close: async () => {
        this.subs.delete(sub);
        await sub.close();
      },
    };
  }

  private full(key: string): string {
    return `${keyPrefix(this.cluster)}${key}`;
  }
}

/** Patroni's maintenance mode (`pause: true` in its config key). */
function patroniPaused(config: string | null): boolean {
  try {
    return config !== null && (JSON.parse(config) as { pause?: unknown }).pause === true;
  } catch {
    return false; // Patroni writes this key; a value that is not JSON is not a pause.
  }
}

/** Patroni's `sync` key: `{"leader": "db1", "sync_standby": "db2"}` (several standbys comma-separated). */
export function parseSync(raw: string | null): PatroniLeaderView['sync'] {
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as { leader?: unknown; sync_standby?: unknown };
    const standbys =
      typeof v.sync_standby === 'string'
        ? v.sync_standby
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean)
        : [];
    return { leader: typeof v.leader === 'string' ? v.leader : null, standbys };
  } catch {
    return null;
  }
}
