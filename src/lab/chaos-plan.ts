/**
 * The pure half of `vigil lab chaos` (chaos.ts): the seeded PRNG, the fault kinds, the schedule a
 * seed gives, percentiles and the report's table. No I/O here, so unit tests replay a seed.
 *
 * A schedule names targets by what they are to the cluster (the active app machine, a standby,
 * the db primary, ...), not by name: which machine that is is known only when the fault comes,
 * and the runner resolves it then. The same seed gives the same kinds, targets and hold times.
 */

/** mulberry32: a small seeded PRNG, numbers in [0, 1); the same seed, the same sequence. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rng = () => number;

export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
export const between = (rng: Rng, min: number, max: number): number => Math.round(min + rng() * (max - min));

/** Processes the lab can signal that a fault may hit. */
export const CHAOS_PROCS = ['app', 'agent', 'observer', 'patroni', 'postgres', 'etcd', 'haproxy'] as const;
export type ChaosProc = (typeof CHAOS_PROCS)[number];

/** One fault alone. */
export const SINGLE_KINDS = [
  'machine-kill',
  ...CHAOS_PROCS.map((p) => `kill-${p}` as const),
  ...CHAOS_PROCS.map((p) => `stop-${p}` as const),
  'partition',
  'partition-one-way',
  'etcd-cut',
  'proxy-cut-app',
  'packet-loss',
  'latency',
  'disk-full',
  'observer-mid-failover',
] as const;
export type SingleKind = (typeof SINGLE_KINDS)[number];
export const FAULT_KINDS = [...SINGLE_KINDS, 'two-at-once'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** packet-loss: the share of packets dropped each way, in percent (nftables' random numbers). */
export const LOSS_PERCENT: [number, number] = [5, 30];

/**
 * latency: the delay each way, in ms, so a round trip to the machine is twice as much longer.
 * The kernel the lab runs on has no sch_netem; the packets are held by a queue program instead
 * (net.ts addLatency). Up to 400 ms each way: about the observer's check timeout as a round trip,
 * so a run sees both a slow machine that still answers and one whose answers come too late.
 */
export const LATENCY_MS: [number, number] = [50, 400];
/** The largest delay `vigil lab latency` takes, each way (ms). */
export const MAX_LATENCY_MS = 10_000;

/** What a target is to the cluster, resolved to a machine when the fault comes. */
export type TargetRole = 'active-app' | 'standby-app' | 'db-primary' | 'db-standby' | 'observer' | 'etcd-member' | 'proxy';

/** Which targets make sense for a kind. */
export function targetsOf(kind: SingleKind): TargetRole[] {
  switch (kind) {
    case 'machine-kill':
    case 'partition':
    case 'partition-one-way':
      return ['active-app', 'standby-app', 'db-primary', 'db-standby'];
    case 'etcd-cut':
      return ['active-app', 'standby-app', 'db-primary'];
    case 'packet-loss':
    case 'latency':
      return ['active-app', 'standby-app', 'db-primary', 'db-standby', 'proxy'];
    case 'proxy-cut-app':
      // A proxy cut from the active app machine alone (both ways): the others still reach it.
      return ['proxy'];
    case 'disk-full':
      // A standby's synced directory (lab fill: a 64 MiB tmpfs over it, filled): pushes to it
      // fail until the ballast goes, and nothing else may. The tmpfs stays until lab down.
      return ['standby-app'];
    case 'observer-mid-failover':
      return ['active-app'];
  }
  const proc = kind.slice(5) as ChaosProc;
  switch (proc) {
    case 'app':
      return ['active-app'];
    case 'agent':
      return ['active-app', 'standby-app'];
    case 'observer':
      return ['observer'];
    case 'haproxy':
      return ['proxy'];
    case 'etcd':
      return ['etcd-member'];
    case 'patroni':
    case 'postgres':
      return ['db-primary', 'db-standby'];
  }
}

/**
 * Single kinds that can overlap with another in `two-at-once` (the observer killed mid-failover is
 * a pair of faults already): those of `--faults`, or all of these when it names none.
 */
export const OVERLAPPABLE: SingleKind[] = SINGLE_KINDS.filter((k) => k !== 'observer-mid-failover');

export interface SingleStep {
  kind: SingleKind;
  target: TargetRole;
  /** How long the fault is held before it is recovered (ms); the observer killed mid-failover ignores it. */
  holdMs: number;
}

export interface Step {
  n: number;
  kind: FaultKind;
  faults: SingleStep[];
  /** two-at-once: the second fault starts this long after the first (ms). */
  offsetMs: number;
}

export interface PlanOptions {
  kinds: readonly FaultKind[];
  /** Range of the hold time (ms); default 2–12 s. */
  holdMs?: [number, number];
}

export const DEFAULT_HOLD_MS: [number, number] = [2000, 12_000];

/** Parses `--faults a,b,c` (empty or absent: all) less `--except d,e`: every name a kind. */
export function parseKinds(list: string | undefined, except?: string): FaultKind[] {
  const names = (l: string | undefined) =>
    (l ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const asked = names(list);
  const left = names(except);
  const bad = [...asked, ...left].filter((n) => !(FAULT_KINDS as readonly string[]).includes(n));
  if (bad.length) throw new Error(`unknown fault kind(s): ${bad.join(', ')}; known: ${FAULT_KINDS.join(', ')}`);
  const kinds = (asked.length ? [...new Set(asked)] : [...FAULT_KINDS]).filter((k) => !left.includes(k)) as FaultKind[];
  if (!kinds.length) throw new Error('no fault kind left to run');
  return kinds;
}

function single(rng: Rng, kind: SingleKind, hold: [number, number], avoid?: TargetRole): SingleStep {
  const targets = targetsOf(kind);
  const others = targets.filter((t) => t !== avoid);
  return { kind, target: pick(rng, others.length ? others : targets), holdMs: between(rng, hold[0], hold[1]) };
}

/** The schedule of a seed: an endless sequence of steps, the same for the same seed and options. */
export function* schedule(seed: number, o: PlanOptions): Generator<Step> {
  if (!o.kinds.length) throw new Error('no fault kinds to choose from');
  const rng = mulberry32(seed);
  const hold = o.holdMs ?? DEFAULT_HOLD_MS;
  // Two at once overlaps kinds asked for; asked alone, any.
  const asked = OVERLAPPABLE.filter((k) => o.kinds.includes(k));
  const pool = asked.length ? asked : OVERLAPPABLE;
  for (let n = 1; ; n++) {
    const kind = pick(rng, o.kinds);
    if (kind !== 'two-at-once') {
      yield { n, kind, faults: [single(rng, kind, hold)], offsetMs: 0 };
      continue;
    }
    const a = single(rng, pick(rng, pool), hold);
    const b = single(rng, pick(rng, pool), hold, a.target);
    yield { n, kind, faults: [a, b], offsetMs: between(rng, 0, Math.floor(a.holdMs / 2)) };
  }
}

/** The first `count` steps of a seed's schedule. */
export function planSteps(seed: number, o: PlanOptions, count: number): Step[] {
  const out: Step[] = [];
  for (const s of schedule(seed, o)) {
    if (out.length >= count) break;
    out.push(s);
  }
  return out;
}

/** The p-th percentile (0–100) of `xs`, nearest rank; undefined for none. */
export function percentile(xs: readonly number[], p: number): number | undefined {
  if (!xs.length) return undefined;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * Time until service was back after an injection: 0 if no request failed between `fromMs` and
 * `toMs`, else from `fromMs` to the first acknowledgement after the last failure of that window.
 * Undefined when nothing was acknowledged after it (service not back).
 */
export function backAfter(fromMs: number, toMs: number, failedAtMs: readonly number[], ackedAtMs: readonly number[]): number | undefined {
  const failures = failedAtMs.filter((t) => t >= fromMs && t <= toMs);
  if (!failures.length) return 0;
  const last = Math.max(...failures);
  const back = ackedAtMs.find((t) => t > last);
  return back === undefined ? undefined : back - fromMs;
}

/** What one fault (a step) gave. */
export interface FaultResult {
  n: number;
  kind: FaultKind;
  /** Readable: kind@machine (role), and the second fault for two-at-once. */
  what: string;
  heldMs: number;
  /** :80 and :5000: ms from the injection until service was back (backAfter); null: not back. */
  httpBackMs: number | null;
  dbBackMs: number | null;
  violations: number;
  /** Acknowledged writes missing after this fault: tickets (:80) and rows (:5000). */
  lostHttp: number;
  lostDb: number;
  /** A failure of the run itself (a fault could not be injected, the cluster did not settle). */
  error?: string;
  /** The checker's text when there were violations. */
  detail?: string;
}

export interface KindSummary {
  kind: FaultKind;
  count: number;
  http: { p50?: number; p95?: number; max?: number; notBack: number };
  db: { p50?: number; p95?: number; max?: number; notBack: number };
  violations: number;
  lost: number;
  errors: number;
}

export function summarize(results: readonly FaultResult[]): KindSummary[] {
  const kinds = FAULT_KINDS.filter((k) => results.some((r) => r.kind === k));
  return kinds.map((kind) => {
    const rs = results.filter((r) => r.kind === kind);
    const stats = (get: (r: FaultResult) => number | null) => {
      const xs = rs.map(get).filter((x): x is number => x !== null);
      return { p50: percentile(xs, 50), p95: percentile(xs, 95), max: xs.length ? Math.max(...xs) : undefined, notBack: rs.length - xs.length };
    };
    return {
      kind,
      count: rs.length,
      http: stats((r) => r.httpBackMs),
      db: stats((r) => r.dbBackMs),
      violations: rs.reduce((n, r) => n + r.violations, 0),
      lost: rs.reduce((n, r) => n + r.lostHttp + r.lostDb, 0),
      errors: rs.filter((r) => r.error).length,
    };
  });
}

const sec = (ms: number | undefined): string => (ms === undefined ? '–' : (ms / 1000).toFixed(1));
const triple = (s: KindSummary['http']): string =>
  s.p50 === undefined ? `not back ×${s.notBack}` : `${sec(s.p50)} / ${sec(s.p95)} / ${sec(s.max)}${s.notBack ? ` (not back ×${s.notBack})` : ''}`;

export interface ChaosTotals {
  seed: number;
  topology: string;
  minutes: number;
  faults: number;
  violations: number;
  lostHttp: number;
  lostDb: number;
  errors: number;
}

/** The report as a markdown table, one row per fault kind, and a totals line. */
export function formatReport(summary: readonly KindSummary[], t: ChaosTotals): string {
  const lines = [
    `chaos: seed ${t.seed}, topology ${t.topology}, ${t.faults} fault(s) in ${t.minutes.toFixed(1)} min; ${t.violations} violation(s), ${t.lostHttp + t.lostDb} write(s) lost (${t.lostHttp} through :80, ${t.lostDb} through :5000)${t.errors ? `, ${t.errors} run error(s)` : ''}`,
    '',
    '| fault kind | times | :80 back after, s (p50 / p95 / max) | :5000 back after, s (p50 / p95 / max) | violations | writes lost |',
    '|---|---:|---|---|---:|---:|',
    ...summary.map(
      (s) => `| ${s.kind}${s.errors ? ` (${s.errors} error)` : ''} | ${s.count} | ${triple(s.http)} | ${triple(s.db)} | ${s.violations} | ${s.lost} |`,
    ),
  ];
  return lines.join('\n');
}

/** One progress line per fault. */
export function formatResult(r: FaultResult, atMs: number): string {
  const back = (ms: number | null) => (ms === null ? 'not back' : `${sec(ms)} s`);
  return `[+${sec(atMs)}s] #${r.n} ${r.kind}: ${r.what}; held ${sec(r.heldMs)} s; :80 back after ${back(r.httpBackMs)}, :5000 after ${back(r.dbBackMs)}; ${r.violations} violation(s), ${r.lostHttp + r.lostDb} lost${r.error ? `; ERROR: ${r.error}` : ''}`;
}
