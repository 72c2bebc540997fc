/**
 * The pure half of the lab's checker (checker.ts): what one sample round holds, the invariants
 * evaluated over a list of rounds, and the timeline printed around a violation. No I/O here, so
 * unit tests build rounds by hand.
 *
 * An overlap is two things true in the same round. Within one proxy's `show servers state` the
 * servers are one snapshot (no skew). Across machines each fact was true at some instant between
 * the sample's send and answer times, so a violation carries its skew: the span from the earliest
 * send to the latest answer of the samples involved. The checker's short per-request deadline
 * bounds it; a sample answered after the deadline counts as no answer, never as true.
 */

/** One backend server as one proxy's runtime API showed it. */
export interface ServerSample {
  backend: string;
  server: string;
  admin: 'ready' | 'maint' | 'drain';
  op: 'up' | 'down' | 'stopping' | 'starting';
}

export type SampleKind = 'proxy' | 'status' | 'role' | 'app' | 'primary';

/** One request of a round: to whom, when sent and answered (performance.now() ms), and what it said. */
export interface Sample {
  kind: SampleKind;
  /** The machine asked (for `proxy`, the proxy machine). */
  target: string;
  sentMs: number;
  answeredMs: number;
  /** No usable answer within the deadline: why. Then nothing below is set. */
  error?: string;
  /** proxy: every server of the app and :5000 backends, one snapshot. */
  servers?: ServerSample[];
  /** status: the agent says its machine is active (and at which epoch). */
  active?: boolean;
  epoch?: number | null;
  /** role, app, primary: the HTTP status was 200. */
  ok?: boolean;
  /** role, app, primary: the HTTP status. */
  status?: number;
}

export interface Round {
  n: number;
  startMs: number;
  samples: Sample[];
}

export type Rule = 'proxy-two-up' | 'two-agents-active' | 'two-roles-200' | 'two-primaries';

export const RULE_TEXT: Record<Rule, string> = {
  'proxy-two-up': "two app machines UP and READY at once in one proxy's app backend",
  'two-agents-active': 'two agents reporting active at once',
  'two-roles-200': "two app machines' /role answering 200 at once",
  'two-primaries': "two db machines answering Patroni's /primary 200 at once, each where a proxy routes :5000 to it",
};

/** One round that breaks a rule. */
export interface Breach {
  rule: Rule;
  round: number;
  /** The machines involved, sorted. */
  machines: string[];
  /** The proxy whose snapshot shows it (proxy-two-up). */
  proxy?: string;
  /** ms from the earliest send to the latest answer of the samples involved; 0 for one snapshot. */
  skewMs: number;
}

/** Consecutive rounds breaking the same rule with the same machines: one violation. */
export interface Violation {
  rule: Rule;
  machines: string[];
  proxy?: string;
  firstRound: number;
  lastRound: number;
  rounds: number;
  /** The largest skew among its rounds. */
  maxSkewMs: number;
}

export const APP_BACKEND = 'app';
const POSTGRES_BACKEND = 'postgres';

const serving = (s: ServerSample) => s.admin === 'ready' && s.op === 'up';

/** What one proxy snapshot shows: two app servers UP and READY in it (no skew: one answer). */
export function breachesOf(round: Round): Breach[] {
  const out: Breach[] = [];
  for (const p of round.samples.filter((s) => s.kind === 'proxy' && !s.error)) {
    const up = (p.servers ?? []).filter((s) => s.backend === APP_BACKEND && serving(s)).map((s) => s.server);
    if (up.length > 1) out.push({ rule: 'proxy-two-up', round: round.n, machines: [...up].sort(), proxy: p.target, skewMs: 0 });
  }
  return out;
}

/**
 * The db machines some proxy of the round routes :5000 to (UP and READY in its snapshot); every
 * machine when no proxy of the round could be read (nothing is known, so nothing is excused).
 * A primary no proxy routes to takes no client's write: Patroni's /primary 200 of a primary cut
 * off from every proxy (it demotes itself after retry_timeout) is not two primaries for clients.
 */
function routedDb(round: Round): (db: string) => boolean {
  const read = round.samples.filter((s) => s.kind === 'proxy' && !s.error);
  if (!read.length) return () => true;
  const up = new Set(read.flatMap((p) => (p.servers ?? []).filter((s) => s.backend === POSTGRES_BACKEND && serving(s)).map((s) => s.server)));
  return (db) => up.has(db);
}

const MACHINE_RULES: [Rule, SampleKind, (s: Sample, round: Round) => boolean][] = [
  ['two-agents-active', 'status', (s) => s.active === true],
  ['two-roles-200', 'role', (s) => s.ok === true],
  ['two-primaries', 'primary', (s, round) => s.ok === true && routedDb(round)(s.target)],
];

/**
 * Two machines' answers that prove both held at one instant, whatever the sampling skew. Each
 * machine is asked on its own, so two "yes" in one round may come from different instants (one
 * machine stopping just before the other starts is a clean handover). Proof instead: every sample
 * of machine y said yes from one answered at `from` to one sent at `to`, so y held throughout
 * [from, to] (it is asked every 50 ms; a machine does not stop and start again in between); a
 * yes from machine x to a request sent at or after `from` and answered at or before `to` held at
 * an instant inside that span. A sample with no answer breaks y's span (nothing is known then).
 */
export function provenOverlaps(rounds: Round[]): Breach[] {
  const out: Breach[] = [];
  const all = rounds.flatMap((r) => r.samples.map((s) => ({ s, round: r.n, r })));
  for (const [rule, kind, holds] of MACHINE_RULES) {
    const ofKind = all.filter((x) => x.s.kind === kind).sort((a, b) => a.s.sentMs - b.s.sentMs);
    const machines = [...new Set(ofKind.map((x) => x.s.target))];
    for (const y of machines) {
      // y's spans of yes: [first answer, last send] of each run of consecutive yes samples.
      const spans: { from: number; to: number }[] = [];
      let run: { from: number; to: number } | null = null;
      for (const { s, r } of ofKind.filter((x) => x.s.target === y)) {
        if (!s.error && holds(s, r)) {
          if (run) run.to = s.sentMs;
          else run = { from: s.answeredMs, to: s.sentMs };
        } else if (run) {
          spans.push(run);
          run = null;
        }
      }
      if (run) spans.push(run);
      for (const { s, round } of ofKind.filter((x) => x.s.target !== y && !x.s.error && holds(x.s, x.r))) {
        if (spans.some((p) => s.sentMs >= p.from && s.answeredMs <= p.to))
          out.push({ rule, round, machines: [s.target, y].sort(), skewMs: Math.round(s.answeredMs - s.sentMs) });
      }
    }
  }
  return out;
}

/** ms from the earliest send to the latest answer. */
export function skewOf(samples: Pick<Sample, 'sentMs' | 'answeredMs'>[]): number {
  if (samples.length === 0) return 0;
  return Math.max(...samples.map((s) => s.answeredMs)) - Math.min(...samples.map((s) => s.sentMs));
}

/** Every rule broken in the rounds, consecutive rounds of one breach merged into one violation. */
export function evaluate(rounds: Round[]): Violation[] {
  const open = new Map<string, Violation>();
  const out: Violation[] = [];
  let prev: number | undefined;
  const proven = provenOverlaps(rounds);
  for (const r of rounds) {
    const seen = new Set<string>();
    const breaches = [...breachesOf(r), ...proven.filter((b) => b.round === r.n)];
    // One breach per rule and machines in a round (both machines can prove it of the other).
    const unique = [...new Map(breaches.map((b) => [`${b.rule}|${b.proxy ?? ''}|${b.machines.join(',')}`, b])).values()];
    for (const b of unique) {
      const key = `${b.rule}|${b.proxy ?? ''}|${b.machines.join(',')}`;
      seen.add(key);
      const v = open.get(key);
      if (v && prev !== undefined && v.lastRound === prev) {
        v.lastRound = r.n;
        v.rounds++;
        v.maxSkewMs = Math.max(v.maxSkewMs, b.skewMs);
      } else {
        const fresh: Violation = { rule: b.rule, machines: b.machines, firstRound: r.n, lastRound: r.n, rounds: 1, maxSkewMs: b.skewMs };
        if (b.proxy) fresh.proxy = b.proxy;
        open.set(key, fresh);
        out.push(fresh);
      }
    }
    for (const k of [...open.keys()]) if (!seen.has(k)) open.delete(k);
    prev = r.n;
  }
  return out;
}

/**
 * Skew of the rounds' answered samples (a sample without an answer holds no fact): the typical and
 * the worst span from a round's first send to its last answer.
 */
export function roundSkew(rounds: Round[]): { medianMs: number; maxMs: number } {
  const spans = rounds.map((r) => skewOf(r.samples.filter((s) => !s.error))).sort((a, b) => a - b);
  if (spans.length === 0) return { medianMs: 0, maxMs: 0 };
  return { medianMs: spans[Math.floor(spans.length / 2)]!, maxMs: spans.at(-1)! };
}

/** A time on the checker's clock, as seconds since it started: `+12.345s`. */
const at = (ms: number, originMs: number) => `+${((ms - originMs) / 1000).toFixed(3)}s`;

function describeSample(s: Sample): string {
  if (s.error) return `no answer (${s.error})`;
  switch (s.kind) {
    case 'proxy': {
      const byBackend = new Map<string, string[]>();
      for (const v of s.servers ?? []) {
        const list = byBackend.get(v.backend) ?? [];
        list.push(`${v.server} ${v.op.toUpperCase()} ${v.admin.toUpperCase()}`);
        byBackend.set(v.backend, list);
      }
      return [...byBackend].map(([b, l]) => `${b}[${l.join(', ')}]`).join(' ');
    }
    case 'status':
      return `${s.active ? 'ACTIVE' : 'not active'}${s.epoch !== undefined && s.epoch !== null ? ` epoch ${s.epoch}` : ''}`;
    default:
      return `${s.status ?? '?'}${s.ok ? ' (yes)' : ''}`;
  }
}

const KIND_ORDER: SampleKind[] = ['proxy', 'status', 'role', 'app', 'primary'];
const KIND_TEXT: Record<SampleKind, string> = { proxy: 'proxy', status: 'agent /status', role: 'agent /role', app: 'app direct', primary: 'patroni /primary' };

/**
 * One round as readable lines: a header with its start and skew, then one line per sample with its
 * send and answer times relative to the round's start.
 */
export function formatRound(r: Round, originMs: number, mark = ''): string[] {
  const lines = [`${mark ? `${mark} ` : '  '}round ${r.n} at ${at(r.startMs, originMs)} (samples sent to answered within ${Math.round(skewOf(r.samples))} ms)`];
  const sorted = [...r.samples].sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.target.localeCompare(b.target));
  for (const s of sorted) {
    const when = `sent +${Math.round(s.sentMs - r.startMs)} ms, answered +${Math.round(s.answeredMs - r.startMs)} ms`;
    lines.push(`      ${KIND_TEXT[s.kind].padEnd(17)} ${s.target.padEnd(10)} ${describeSample(s)}  [${when}]`);
  }
  return lines;
}

/** A violation and the rounds around it (`context` before its first and after its last round). */
export function formatViolation(v: Violation, rounds: Round[], originMs: number, context = 3): string {
  const idx = new Map(rounds.map((r, i) => [r.n, i]));
  const first = idx.get(v.firstRound) ?? 0;
  const last = idx.get(v.lastRound) ?? first;
  const where = v.proxy ? ` in proxy ${v.proxy}'s snapshot` : '';
  const skew = v.proxy ? 'one snapshot, no skew' : `sampling skew up to ${Math.round(v.maxSkewMs)} ms`;
  const firstRound = rounds[first];
  const lines = [
    `VIOLATION: ${RULE_TEXT[v.rule]}: ${v.machines.join(' and ')}${where}, rounds ${v.firstRound}..${v.lastRound} (${v.rounds} round${v.rounds === 1 ? '' : 's'}${firstRound ? `, from ${at(firstRound.startMs, originMs)}` : ''}; ${skew})`,
  ];
  const show = new Set<number>();
  for (let i = Math.max(0, first - context); i <= Math.min(rounds.length - 1, first + context); i++) show.add(i);
  for (let i = Math.max(0, last - context); i <= Math.min(rounds.length - 1, last + context); i++) show.add(i);
  let prev: number | undefined;
  for (const i of [...show].sort((a, b) => a - b)) {
    if (prev !== undefined && i > prev + 1) lines.push(`  ... ${i - prev - 1} rounds ...`);
    const r = rounds[i]!;
    lines.push(...formatRound(r, originMs, r.n >= v.firstRound && r.n <= v.lastRound ? '>>' : ''));
    prev = i;
  }
  return lines.join('\n');
}

/** A write acknowledged through :80 (or :5000): by which writer, what id, when, which machine answered. */
export interface AckedWrite {
  writer: string;
  id: number;
  sentMs: number;
  ackMs: number;
  node: string;
  /** What was written (the ticket's title), to compare when it is read back. */
  title?: string;
}

/**
 * Writes acknowledged by a machine other than `to` after `to` acknowledged its first write since
 * `sinceMs`: the old machine still serving once the new one serves.
 */
export function servedAfterTakeover(writes: AckedWrite[], sinceMs: number, to: string): AckedWrite[] {
  const later = writes.filter((w) => w.ackMs > sinceMs).sort((a, b) => a.ackMs - b.ackMs);
  const first = later.find((w) => w.node === to);
  if (!first) return [];
  // A write sent to the old machine before the new one's first acknowledgement and answered after
  // it was still served while the new one served: counted too.
  return later.filter((w) => w.node !== to && w.ackMs > first.ackMs);
}

/** One run of the application's background job (the reference application's SLA timer, `sla_runs`). */
export interface JobRun {
  node: string;
  /** The activation epoch the machine ran it at. */
  epoch: number;
  /** When it ran, on the database's clock (ms since 1970): every run is on that one clock. */
  atMs: number;
}

/** The job ran on two machines at overlapping times. */
export interface JobOverlap {
  machines: [string, string];
  epochs: [number, number];
  /** The two machines' spans of runs that overlap, on the database's clock. */
  spans: [{ fromMs: number; toMs: number }, { fromMs: number; toMs: number }];
}

/**
 * Proven overlaps of the background job. A machine runs it once a second for as long as it is
 * active at one epoch, so its runs at that epoch span a stretch of time in which it ran the job
 * throughout; and a machine is active at most once per epoch (another machine needs a newer one).
 * Two machines' spans that share an instant on the database's clock are two machines running the
 * job at once; spans of one machine (a machine active again at a newer epoch) are not.
 */
export function jobOverlaps(runs: JobRun[]): JobOverlap[] {
  const spans = new Map<string, { node: string; epoch: number; fromMs: number; toMs: number }>();
  for (const r of runs) {
    const key = `${r.node}|${r.epoch}`;
    const s = spans.get(key);
    if (!s) spans.set(key, { node: r.node, epoch: r.epoch, fromMs: r.atMs, toMs: r.atMs });
    else Object.assign(s, { fromMs: Math.min(s.fromMs, r.atMs), toMs: Math.max(s.toMs, r.atMs) });
  }
  const list = [...spans.values()].sort((a, b) => a.fromMs - b.fromMs || a.node.localeCompare(b.node));
  const out: JobOverlap[] = [];
  for (let i = 0; i < list.length; i++)
    for (let j = i + 1; j < list.length; j++) {
      const [a, b] = [list[i]!, list[j]!];
      if (a.node !== b.node && b.fromMs <= a.toMs && a.fromMs <= b.toMs)
        out.push({
          machines: [a.node, b.node],
          epochs: [a.epoch, b.epoch],
          spans: [
            { fromMs: a.fromMs, toMs: a.toMs },
            { fromMs: b.fromMs, toMs: b.toMs },
          ],
        });
    }
  return out;
}

/** An overlap as one line, times on the database's clock (UTC). */
export function formatJobOverlap(o: JobOverlap): string {
  const t = (ms: number) => new Date(ms).toISOString().slice(11, 23);
  const [a, b] = o.spans;
  return `VIOLATION: the background job ran on two machines at once: ${o.machines[0]} (epoch ${o.epochs[0]}, runs ${t(a.fromMs)}..${t(a.toMs)}) and ${o.machines[1]} (epoch ${o.epochs[1]}, runs ${t(b.fromMs)}..${t(b.toMs)}), database clock UTC`;
}
