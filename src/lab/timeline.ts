/**
 * Where the time of a failover or switchover goes: the lab machines' journals between two moments
 * (the observer's decisions, Patroni's and PostgreSQL's steps, HAProxy marking servers up and
 * down, the agents starting and stopping the application), merged with a client's own marks, in
 * one list by time. The lab machines share this host's clock, so journal times and the client's
 * (performance.timeOrigin + performance.now()) are on one scale.
 */
import { withRole, type Cluster } from '../config/schema.ts';
import { UNITS } from '../layout/units.ts';
import { LabShell } from './shell.ts';

export interface TimelineLine {
  /** Wall-clock milliseconds since the epoch. */
  atMs: number;
  /** `machine unit` or `client`. */
  source: string;
  message: string;
}

/** Lines of each unit that say nothing about a move: HAProxy's request log, Patroni's idle loop, the journal's own lines. */
const NOISE: Record<string, RegExp> = {
  [UNITS.haproxy]: /^(?!.*\b(Server|Backend|backend|Proxy)\b)/,
  [UNITS.patroni]: /no action\. I am|Lock owner: .*; I am|^$/,
  [UNITS.refapp]: /^$/,
  [UNITS.agent]: /^$/,
  [UNITS.observer]: /"event":"(observe|db-release-wait|probe)"|^$/,
};

/** Whether a journal line of this unit belongs in a timeline (see NOISE). */
export function telling(unit: string, message: string): boolean {
  const noise = NOISE[unit];
  return noise === undefined || !noise.test(message);
}

/** The units a timeline reads, per machine: proxies, observers, database members, app machines. */
export function timelineUnits(cluster: Cluster): { machine: string; unit: string }[] {
  const out: { machine: string; unit: string }[] = [];
  for (const m of withRole(cluster, 'proxy')) out.push({ machine: m.name, unit: UNITS.haproxy });
  for (const m of withRole(cluster, 'observer')) out.push({ machine: m.name, unit: UNITS.observer });
  for (const m of withRole(cluster, 'db')) out.push({ machine: m.name, unit: UNITS.patroni });
  for (const m of withRole(cluster, 'app')) out.push({ machine: m.name, unit: UNITS.agent }, { machine: m.name, unit: UNITS.refapp });
  return out;
}

/** One unit's journal lines from `fromMs` to `toMs` (wall clock), telling ones only. */
async function unitLines(machine: string, unit: string, fromMs: number, toMs: number): Promise<TimelineLine[]> {
  const r = await new LabShell(machine).exec(
    [
      'journalctl',
      '-u',
      unit,
      '-o',
      'json',
      '--no-pager',
      '--output-fields=MESSAGE',
      '--since',
      `@${Math.floor(fromMs / 1000)}`,
      '--until',
      `@${Math.ceil(toMs / 1000)}`,
    ],
    { timeoutMs: 60_000 },
  );
  if (r.code !== 0) return [{ atMs: fromMs, source: `${machine} ${unit}`, message: `(journal unreadable: exit ${r.code} ${r.stderr.trim()})` }];
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { MESSAGE?: unknown; __REALTIME_TIMESTAMP?: string })
    .map((e) => ({ atMs: Number(e.__REALTIME_TIMESTAMP) / 1000, source: `${machine} ${unit}`, message: typeof e.MESSAGE === 'string' ? e.MESSAGE : '' }))
    .filter((e) => e.atMs >= fromMs && e.atMs <= toMs && telling(unit, e.message));
}

/** Every telling journal line of the lab between two wall-clock moments, with the client's marks, in time order. */
export async function labTimeline(cluster: Cluster, fromMs: number, toMs: number, marks: TimelineLine[] = []): Promise<TimelineLine[]> {
  const parts = await Promise.all(timelineUnits(cluster).map((u) => unitLines(u.machine, u.unit, fromMs, toMs)));
  return mergeTimeline([...parts.flat(), ...marks]);
}

export function mergeTimeline(lines: TimelineLine[]): TimelineLine[] {
  return [...lines].sort((a, b) => a.atMs - b.atMs);
}

/** One line each: milliseconds after `zeroMs`, the source, the message (cut at `width`). */
export function formatTimeline(lines: TimelineLine[], zeroMs: number, width = 220): string {
  return lines
    .map((l) => {
      const ms = Math.round(l.atMs - zeroMs);
      const text = l.message.replace(/\s+/g, ' ');
      return `${String(ms).padStart(6)} ms  ${l.source.padEnd(30)} ${text.length > width ? `${text.slice(0, width)}…` : text}`;
    })
    .join('\n');
}

/** performance.now() milliseconds as wall-clock milliseconds since the epoch. */
export const wallOf = (perfMs: number): number => performance.timeOrigin + perfMs;
