/**
 * The lab's checker: the witness for "never two app machines serving, never two primaries, no
 * acknowledged write lost" in lab tests and benchmarks. Switched on with `new Checker(lab)` and
 * `start()`; every `intervalMs` (50) it samples, from this host and all at once:
 *
 * - every proxy machine's HAProxy (`show servers state`: the app and :5000 backends in one snapshot);
 * - every app machine's agent, `/status` and `/role`, with the lab admin's certificate;
 * - every app machine directly (the application's health path on its app port);
 * - Patroni's `/primary` on every db machine;
 *
 * and several writers create tickets through the proxy's :80 (optionally one writes rows through
 * :5000), each remembering every acknowledged write. `checkJob()` reads the runs the application's
 * background job recorded in the database (the reference application's SLA timer) and proves it
 * never ran on two machines at once (invariants.ts, jobOverlaps). The invariants and the timeline printed
 * around a violation are the pure half, invariants.ts.
 *
 * A round starts every 50 ms, its samples sent together; each sample has a short deadline (400
 * ms), and an answer after it counts as no answer, never as true. A round is complete once all its
 * samples are in; a machine that hangs delays only its own sample, not the next round.
 */
import { Agent as HttpsAgent } from 'node:https';
import { join } from 'node:path';
import { withRole, type Machine } from '../config/schema.ts';
import { appHealthTarget } from '../layout/backend.ts';
import { httpsText } from '../util/net.ts';
import { AGENT_PORT } from '../layout/network.ts';
import type { AgentStatus } from '../model/ha.ts';
import { patroniOf } from '../patroni/client.ts';
import { loadPki, type LoadedPki } from '../pki/ca.ts';
import { parseServersState } from '../proxy/runtime.ts';
import pg from 'pg';
import { sleep, waitFor } from '../util/exec.ts';
import { labRuntime, type LabHandle } from './lab.ts';
import { LAB_DIR } from './paths.ts';
import { AckWriter } from './writer.ts';
import {
  APP_BACKEND,
  evaluate,
  formatJobOverlap,
  formatRound,
  jobOverlaps,
  formatViolation,
  roundSkew,
  servedAfterTakeover,
  type AckedWrite,
  type JobOverlap,
  type JobRun,
  type Round,
  type Sample,
  type ServerSample,
  type Violation,
} from './invariants.ts';

export interface CheckerOptions {
  /** Time between the starts of two rounds (default 50 ms; a round that takes longer delays the next). */
  intervalMs?: number;
  /** Deadline of each sample (default 400 ms): a later answer is no answer. */
  deadlineMs?: number;
  /** Writers creating tickets through the proxy's :80 (default 3; 0 for none). */
  httpWriters?: number;
  /** Pause of each :80 writer between two writes (default 100 ms). */
  writeIntervalMs?: number;
  /** A writer of rows through the proxy's :5000 (default false). */
  dbWriter?: boolean;
}

export interface CheckReport {
  violations: Violation[];
  /** Acknowledged writes by a machine other than the new one after the new one served (`takeover`). */
  servedAfterTakeover: AckedWrite[];
  rounds: number;
  skew: { medianMs: number; maxMs: number };
  /** Readable: the summary line and every violation with its timeline. */
  text: string;
}

/** How long a write's read-back may be asked again while the proxy does not answer it. */
const READ_BACK_MS = 60_000;
/** The rounds kept: the last 10 minutes at 50 ms, enough for any one fault. */
const MAX_ROUNDS = 12_000;

export class Checker {
  readonly rounds: Round[] = [];
  readonly writes: AckedWrite[] = [];
  /** Writes through :80 that failed (no answer, an error status): performance.now() of each. */
  readonly failedWritesAtMs: number[] = [];
  readonly originMs = performance.now();
  readonly dbWriter?: AckWriter;
  private readonly o: Required<Omit<CheckerOptions, 'dbWriter'>>;
  private readonly proxies: Machine[];
  private readonly apps: Machine[];
  private readonly dbs: Machine[];
  /** The :80 of every proxy machine: writer i writes through proxy i modulo their number; read-backs go through the first. */
  private readonly baseUrls: string[];
  private tls?: HttpsAgent;
  /** The lab admin's identity: Patroni's REST API is HTTPS under the lab's cluster CA. */
  private admin?: LoadedPki;
  private stopped = false;
  private loops: Promise<void>[] = [];
  private roundNo = 0;
  private verifiedUpTo = 0;
  /** The database's clock when the checker started: the job's runs it judges are those since. */
  private dbStartMs: number | null = null;

  constructor(
    private readonly lab: LabHandle,
    opts: CheckerOptions = {},
  ) {
    this.o = {
      intervalMs: opts.intervalMs ?? 50,
      deadlineMs: opts.deadlineMs ?? 400,
      httpWriters: opts.httpWriters ?? 3,
      writeIntervalMs: opts.writeIntervalMs ?? 100,
    };
    const { cluster, secrets } = lab;
    this.proxies = withRole(cluster, 'proxy');
    this.apps = withRole(cluster, 'app');
    this.dbs = withRole(cluster, 'db');
    const entry = this.proxies[0]!;
    this.baseUrls = this.proxies.map((p) => `http://${p.address}:${cluster.proxy.httpPort}`);
    if (opts.dbWriter)
      this.dbWriter = new AckWriter({
        host: entry.address,
        port: cluster.proxy.postgresPort,
        user: cluster.database.appUser,
        password: secrets.appDbPassword,
        database: cluster.database.appDatabase,
      });
  }

  async start(): Promise<void> {
    const pki = await loadPki(join(LAB_DIR, 'pki'), 'admin');
    this.admin = pki;
    this.tls = new HttpsAgent({ keepAlive: true, maxSockets: 16, ca: [pki.ca], cert: pki.cert, key: pki.key, minVersion: 'TLSv1.2' });
    await this.dbWriter?.prepare();
    this.dbWriter?.start();
    this.dbStartMs = (await this.queryDb<{ t: Date }>('SELECT now() AS t'))[0]!.t.getTime();
    this.loops.push(this.sampleLoop());
    for (let i = 1; i <= this.o.httpWriters; i++) this.loops.push(this.writeLoop(`w${i}`, this.baseUrls[(i - 1) % this.baseUrls.length]!));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    this.tls?.destroy();
    await this.dbWriter?.stop();
  }

  /**
   * One more writer, through `baseUrl` (e.g. the floating entry address's :80), beside the
   * proxies' own: its writes join `writes` and `failedWritesAtMs` under the name `writer`, and
   * are read back and judged like the others. `stop()` ends it (and `stop()` of the checker too).
   */
  startWriter(writer: string, baseUrl: string): { stop(): Promise<void> } {
    let done = false;
    const loop = this.writeLoop(writer, baseUrl, () => done);
    this.loops.push(loop);
    return {
      stop: async () => {
        done = true;
        await loop;
      },
    };
  }

  /** The machine that acknowledged the last write through :80, if the last write succeeded. */
  serving(): string | undefined {
    const last = this.writes.at(-1);
    const failed = this.failedWritesAtMs.at(-1) ?? -Infinity;
    return last && last.ackMs > failed ? last.node : undefined;
  }

  /** The first write through :80 acknowledged after `sinceMs` by a machine other than `notNode`. */
  firstOtherAfter(sinceMs: number, notNode: string): AckedWrite | undefined {
    return this.writes.find((w) => w.ackMs > sinceMs && w.node !== notNode);
  }

  /**
   * The invariants over the rounds since `sinceMs` (default: all kept), and, with `takeover`,
   * writes acknowledged by another machine after `takeover` served its first one since then.
   */
  check(opts: { sinceMs?: number; takeover?: string } = {}): CheckReport {
    const since = opts.sinceMs ?? -Infinity;
    const rounds = this.rounds.filter((r) => r.startMs >= since);
    const violations = evaluate(rounds);
    const late = opts.takeover ? servedAfterTakeover(this.writes, since, opts.takeover) : [];
    const skew = roundSkew(rounds);
    const period = rounds.length > 1 ? (rounds.at(-1)!.startMs - rounds[0]!.startMs) / (rounds.length - 1) : 0;
    const unanswered = rounds.reduce((n, r) => n + r.samples.filter((x) => x.error).length, 0);
    const lines = [
      `checker: ${rounds.length} rounds (one every ${Math.round(period)} ms on average), ${violations.length} violation(s); a round's answered samples were sent and answered within ${Math.round(skew.medianMs)} ms (median), ${Math.round(skew.maxMs)} ms (worst); ${unanswered} sample(s) without a usable answer (refused, an error, or none within ${this.o.deadlineMs} ms)`,
    ];
    // The timeline shows the rounds before `sinceMs` too.
    for (const v of violations.slice(0, 5)) lines.push(formatViolation(v, this.rounds, this.originMs));
    if (violations.length > 5) lines.push(`... and ${violations.length - 5} more violation(s)`);
    if (late.length)
      lines.push(
        `VIOLATION: ${late.length} write(s) acknowledged by another machine after ${opts.takeover} served: ${late
          .slice(0, 10)
          .map((w) => `${w.writer} ticket ${w.id} by ${w.node} at +${((w.ackMs - this.originMs) / 1000).toFixed(3)}s`)
          .join(', ')}`,
      );
    return { violations, servedAfterTakeover: late, rounds: rounds.length, skew, text: lines.join('\n') };
  }

  /**
   * The background job's runs since the checker started, from the database through the proxy's
   * :5000: the proven overlaps (two machines running it at once), and the runs per machine and
   * epoch, so a test can also see that it ran where it should (an empty table proves nothing).
   */
  async checkJob(): Promise<{ overlaps: JobOverlap[]; runs: JobRun[]; text: string }> {
    const rows = await this.queryDb<{ node: string; epoch: string; t: Date }>('SELECT node, epoch, ran_at AS t FROM sla_runs WHERE ran_at >= $1 ORDER BY id', [
      new Date(this.dbStartMs ?? 0),
    ]);
    const runs = rows.map((r) => ({ node: r.node, epoch: Number(r.epoch), atMs: r.t.getTime() }));
    const overlaps = jobOverlaps(runs);
    const per = new Map<string, number>();
    for (const r of runs) per.set(`${r.node}@${r.epoch}`, (per.get(`${r.node}@${r.epoch}`) ?? 0) + 1);
    const lines = [
      `background job: ${runs.length} run(s) since the checker started (${[...per].map(([k, n]) => `${k}: ${n}`).join(', ') || 'none'}), ${overlaps.length} overlap(s)`,
      ...overlaps.slice(0, 5).map(formatJobOverlap),
    ];
    return { overlaps, runs, text: lines.join('\n') };
  }

  /** One query through the proxy's :5000 as the application's user, asked again while the database fails over. */
  private async queryDb<R extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<R[]> {
    const { cluster, secrets } = this.lab;
    const entry = this.proxies[0]!;
    let last: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      const c = new pg.Client({
        host: entry.address,
        port: cluster.proxy.postgresPort,
        user: cluster.database.appUser,
        password: secrets.appDbPassword,
        database: cluster.database.appDatabase,
        connectionTimeoutMillis: 2000,
        query_timeout: 5000,
      });
      try {
        await c.connect();
        return (await c.query<R>(text, params)).rows;
      } catch (err) {
        last = err;
        await sleep(500);
      } finally {
        await c.end().catch(() => undefined);
      }
    }
    throw new Error(`the checker could not query the database through ${entry.address}:${cluster.proxy.postgresPort}: ${shortError(last)}`, { cause: last });
  }

  /** The last `n` rounds as readable lines (for a failure message). */
  recent(n = 5): string {
    return this.rounds
      .slice(-n)
      .flatMap((r) => formatRound(r, this.originMs))
      .join('\n');
  }

  /**
   * Until one round shows exactly `node` active: the only agent reporting active, the only /role
   * 200, and the only server UP and READY in every proxy's app backend. Only rounds started after
   * the call count. Returns that round's start (performance.now() ms).
   */
  async exactlyOneActive(node: string, timeoutMs = 30_000): Promise<number> {
    const from = this.roundNo;
    try {
      return await waitFor(
        `${node} as the only active machine`,
        async () => this.rounds.find((r) => r.n > from && this.onlyActive(r, node))?.startMs,
        Math.max(timeoutMs, 0),
        50,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; the last rounds:\n${this.recent(3)}`, { cause: err });
    }
  }

  /**
   * Since when `node` had been the only active machine in every view without a break at `atMs`
   * (e.g. what exactlyOneActive returned): the start of the first round of the unbroken run of
   * such rounds that ends with the round started at `atMs`, not before `sinceMs`. Undefined when
   * that round does not show it.
   */
  onlyActiveSince(node: string, sinceMs: number, atMs: number): number | undefined {
    let since: number | undefined;
    let last = this.rounds.length - 1;
    while (last >= 0 && this.rounds[last]!.startMs > atMs) last--;
    for (let i = last; i >= 0; i--) {
      const r = this.rounds[i]!;
      if (r.startMs < sinceMs || !this.onlyActive(r, node)) break;
      since = r.startMs;
    }
    return since;
  }

  private onlyActive(r: Round, node: string): boolean {
    const of = (kind: Sample['kind']) => r.samples.filter((s) => s.kind === kind);
    const proxies = of('proxy');
    if (proxies.length !== this.proxies.length || proxies.some((p) => p.error)) return false;
    for (const p of proxies) {
      const up = (p.servers ?? []).filter((s) => s.backend === APP_BACKEND && s.admin === 'ready' && s.op === 'up').map((s) => s.server);
      if (up.length !== 1 || up[0] !== node) return false;
    }
    const statuses = of('status');
    if (statuses.some((s) => s.error)) return false;
    const active = statuses.filter((s) => s.active).map((s) => s.target);
    const roles = of('role')
      .filter((s) => s.ok)
      .map((s) => s.target);
    return active.length === 1 && active[0] === node && roles.length === 1 && roles[0] === node;
  }

  /**
   * Reads back, through the proxy's :80, every write acknowledged since the last call (each ticket
   * with its title), and the :5000 writer's rows: what is missing. Call it once the faults healed.
   */
  async missingWrites(): Promise<{ http: AckedWrite[]; db: number[] }> {
    const todo = this.writes.slice(this.verifiedUpTo);
    const upTo = this.writes.length;
    const missing: AckedWrite[] = [];
    for (let i = 0; i < todo.length; i += 8) {
      const batch = todo.slice(i, i + 8);
      const found = await Promise.all(batch.map((w) => this.readBack(w)));
      batch.forEach((w, j) => {
        if (!found[j]) missing.push(w);
      });
    }
    this.verifiedUpTo = upTo;
    return { http: missing, db: this.dbWriter ? await this.dbWriter.missing() : [] };
  }

  /**
   * Whether the ticket is there with its title. Asked again for up to READ_BACK_MS while the
   * proxy gives no answer or an error status (a database failover the fault started may still be
   * under way); only a 404 or another title is a missing write.
   */
  private async readBack(w: AckedWrite): Promise<boolean> {
    const deadline = performance.now() + READ_BACK_MS;
    while (performance.now() < deadline) {
      try {
        const res = await fetch(`${this.baseUrls[0]}/api/tickets/${w.id}`, { signal: AbortSignal.timeout(5000) });
        if (res.status === 404) return false;
        if (res.status === 200) {
          const body = (await res.json()) as { title?: string };
          return body.title === w.title;
        }
        await res.body?.cancel();
      } catch {
        // no answer: ask again
      }
      await sleep(500);
    }
    throw new Error(`ticket ${w.id} could not be read back through ${this.baseUrls[0]} in ${READ_BACK_MS / 1000} s (no answer or an error status)`);
  }

  /**
   * A round starts every `intervalMs` whether or not the earlier ones are answered: a machine that
   * hangs holds its own sample until the deadline, not the sampling of the others. A round is kept
   * once all its samples are in, in the order of the rounds' numbers.
   */
  private async sampleLoop(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    while (!this.stopped) {
      const startMs = performance.now();
      const n = ++this.roundNo;
      const round = this.sampleRound(n, startMs).finally(() => inFlight.delete(round));
      inFlight.add(round);
      // More rounds in flight than the deadline explains: this host is too slow; wait for one.
      while (inFlight.size > Math.ceil(this.o.deadlineMs / this.o.intervalMs) + 2) await Promise.race(inFlight);
      const wait = startMs + this.o.intervalMs - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await Promise.all(inFlight);
  }

  private async sampleRound(n: number, startMs: number): Promise<void> {
    const samples = await Promise.all([
      ...this.proxies.map((m) => this.sampleProxy(m)),
      ...this.apps.flatMap((m) => [this.sampleStatus(m), this.sampleRole(m), this.sampleApp(m)]),
      ...this.dbs.map((m) => this.samplePrimary(m)),
    ]);
    let i = this.rounds.length;
    while (i > 0 && this.rounds[i - 1]!.n > n) i--;
    this.rounds.splice(i, 0, { n, startMs, samples });
    if (this.rounds.length > MAX_ROUNDS) this.rounds.splice(0, this.rounds.length - MAX_ROUNDS);
  }

  /** Runs one request with the deadline and records its times; an answer after the deadline is an error. */
  private async timed(kind: Sample['kind'], target: string, ask: (signal: AbortSignal) => Promise<Partial<Sample>>): Promise<Sample> {
    const sentMs = performance.now();
    const signal = AbortSignal.timeout(this.o.deadlineMs);
    try {
      const got = await ask(signal);
      const answeredMs = performance.now();
      if (answeredMs - sentMs > this.o.deadlineMs) return { kind, target, sentMs, answeredMs, error: `answered after the ${this.o.deadlineMs} ms deadline` };
      return { kind, target, sentMs, answeredMs, ...got };
    } catch (err) {
      return { kind, target, sentMs, answeredMs: performance.now(), error: shortError(err) };
    }
  }

  private sampleProxy(m: Machine): Promise<Sample> {
    return this.timed('proxy', m.name, async () => {
      // Without a backend: every backend's servers in one snapshot.
      const all = parseServersState(await labRuntime(m.name, this.o.deadlineMs).command('show servers state'));
      const servers: ServerSample[] = all.map(({ backend, server, admin, op }) => ({ backend, server, admin, op }));
      return { servers };
    });
  }

  private sampleStatus(m: Machine): Promise<Sample> {
    return this.timed('status', m.name, async (signal) => {
      const r = await this.agentGet(m, '/status', signal);
      if (r.status !== 200) throw new Error(`answered ${r.status}`);
      const s = JSON.parse(r.text) as Partial<AgentStatus>;
      if (typeof s.active !== 'boolean') throw new Error('an answer without `active`');
      return { active: s.active, epoch: s.epoch ?? null };
    });
  }

  private sampleRole(m: Machine): Promise<Sample> {
    return this.timed('role', m.name, async (signal) => {
      const r = await this.agentGet(m, '/role', signal);
      if (r.status !== 200 && r.status !== 503) throw new Error(`answered ${r.status}`);
      return { ok: r.status === 200, status: r.status };
    });
  }

  /**
   * GET from an agent's API with the lab admin's certificate, as the agent client (agent/client.ts)
   * asks, but on connections kept alive: a TLS handshake per sample, four or more every 50 ms,
   * would load this host and the agents and stretch the rounds. The pool is the checker's own and
   * holds one identity only.
   */
  private agentGet(m: Machine, path: string, signal: AbortSignal): Promise<{ status: number; text: string }> {
    return this.tlsGet(`https://${m.address}:${AGENT_PORT}${path}`, signal);
  }

  /** GET over the checker's pool, which trusts the cluster CA; `servername`: the name the certificate must carry (else the address). */
  private tlsGet(url: string, signal: AbortSignal, servername?: string): Promise<{ status: number; text: string }> {
    return httpsText(url, { agent: this.tls, signal, ...(servername ? { servername } : {}) });
  }

  private sampleApp(m: Machine): Promise<Sample> {
    // As the observer's deep check asks: over HTTPS, verified, with application.backendTls.
    const target = appHealthTarget(this.lab.cluster, m.name, m.address);
    return this.timed('app', m.name, async (signal) => {
      if (target.tls) {
        const r = await this.tlsGet(target.url, signal, target.tls.servername);
        return { ok: r.status === 200, status: r.status };
      }
      const res = await fetch(target.url, { signal });
      await res.body?.cancel();
      return { ok: res.status === 200, status: res.status };
    });
  }

  private samplePrimary(m: Machine): Promise<Sample> {
    return this.timed('primary', m.name, async (signal) => {
      const ok = await patroniOf(this.lab.cluster, m, { identity: this.admin! }).check('primary', { timeoutMs: this.o.deadlineMs, signal });
      return { ok, status: ok ? 200 : 503 };
    });
  }

  private async writeLoop(writer: string, baseUrl: string, ended: () => boolean = () => false): Promise<void> {
    let seq = 0;
    while (!this.stopped && !ended()) {
      seq++;
      const sentMs = performance.now();
      try {
        const title = `checker ${writer} #${seq} ${Math.round(this.originMs)}`;
        const res = await fetch(`${baseUrl}/api/tickets`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ title }),
          signal: AbortSignal.timeout(3000),
        });
        const body = (await res.json().catch(() => ({}))) as { id?: number; node?: string };
        if (res.status === 201 && typeof body.id === 'number' && typeof body.node === 'string') {
          this.writes.push({ writer, id: body.id, sentMs, ackMs: performance.now(), node: body.node, title });
        } else this.failedWritesAtMs.push(performance.now());
      } catch {
        this.failedWritesAtMs.push(performance.now());
      }
      await sleep(this.o.writeIntervalMs);
    }
  }
}

function shortError(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string };
  if (e?.name === 'TimeoutError' || /_(TIMEOUT|CANCELLED)$/.test(e?.code ?? '')) return 'timeout';
  const text = e?.code ?? e?.message ?? String(err);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
