/**
 * The Doctor page's view (pure): the last report of each source kept in etcd (KEYS.doctorPrefix),
 * `vigil doctor` from the admin's machine (every machine's own checks, over its shell) and the
 * dashboard's own run on an observer (what is seen from there: etcd, Patroni, HAProxy, the agents,
 * the ports; no shell on the machines, so their own checks are listed as not run). Per machine:
 * each check's status and each finding with what, why and the fix.
 *
 * A stored report is read through a schema of what the page shows: one written by another version
 * (or by hand) that does not fit is shown as unreadable, with why, never half-drawn.
 */
import { z } from 'zod';
import type { DoctorRun, DoctorSource } from '../model/ha.ts';
import type { Level } from './timeline.ts';

const checkSchema = z.object({ check: z.string(), status: z.enum(['ok', 'warn', 'fail', 'skipped']), note: z.string().optional() });
const findingSchema = z.object({
  check: z.string(),
  severity: z.enum(['fail', 'warn']),
  machine: z.string().nullable(),
  what: z.string(),
  why: z.string(),
  fix: z.string(),
});
const reportSchema = z.object({
  startedAt: z.string(),
  durationMs: z.number(),
  scope: z.enum(['machines', 'cluster']).optional(),
  machines: z.array(z.object({ name: z.string(), roles: z.array(z.string()), reachable: z.boolean(), checks: z.array(checkSchema) })),
  clusterChecks: z.array(checkSchema),
  findings: z.array(findingSchema),
  summary: z.object({ failures: z.number(), warnings: z.number() }),
});

export type DoctorCheckView = z.infer<typeof checkSchema>;
export type DoctorFindingView = Omit<z.infer<typeof findingSchema>, 'machine'>;

export interface DoctorPartView {
  /** A machine's name, or null for the cluster as a whole. */
  name: string | null;
  roles: string;
  checks: DoctorCheckView[];
  findings: DoctorFindingView[];
  level: Level;
}

export interface DoctorReportView {
  source: DoctorSource;
  title: string;
  by: string;
  /** When the run started (ISO). */
  at: string;
  durationMs: number;
  /** What the run could see. */
  scope: string;
  summary: { failures: number; warnings: number };
  level: Level;
  parts: DoctorPartView[];
  /** Set when the stored report could not be read; nothing else is then shown of it. */
  unreadable?: string;
}

export interface DoctorView {
  cluster: string;
  /** `vigil doctor`'s last report first, then the dashboard's. */
  reports: DoctorReportView[];
  /** A run from the page under way: by whom, since when (ISO). */
  running: { by: string; since: string } | null;
  /** Why the last run from the page failed, if it did. */
  lastError: string | null;
  /** The equivalent command for the full report. */
  command: string;
}

const TITLE: Record<DoctorSource, string> = {
  cli: 'Every machine (vigil doctor)',
  dashboard: 'From the observer (run from this page)',
};

const SCOPE: Record<'machines' | 'cluster', string> = {
  machines: "every machine's own checks over its shell, and the cluster as seen from the admin's machine",
  cluster:
    "the cluster as seen from the observer: etcd, Patroni, HAProxy's servers, the agents, the ports it reaches. The machines' own checks (listening ports, files, certificates, password files, disk, clock) need a shell on them: run `vigil doctor` for those",
};

const levelOf = (failures: number, warnings: number): Level => (failures > 0 ? 'bad' : warnings > 0 ? 'warn' : 'ok');

function reportView(run: DoctorRun): DoctorReportView {
  const base = {
    source: run.source,
    title: TITLE[run.source],
    by: run.by,
    at: run.at,
    durationMs: 0,
    scope: '',
    summary: { failures: 0, warnings: 0 },
    parts: [],
  };
  const r = reportSchema.safeParse(run.report);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join('.') || '(report)'}: ${i.message}`).join('; ');
    return { ...base, level: 'bad', unreadable: `the stored report does not have the fields this page reads (${why}); run doctor again` };
  }
  const rep = r.data;
  const findingsOf = (name: string | null): DoctorFindingView[] => rep.findings.filter((f) => f.machine === name).map(({ machine: _m, ...f }) => f);
  const part = (name: string | null, roles: string, checks: DoctorCheckView[]): DoctorPartView => {
    const findings = findingsOf(name);
    return {
      name,
      roles,
      checks,
      findings,
      level: levelOf(findings.filter((f) => f.severity === 'fail').length, findings.filter((f) => f.severity === 'warn').length),
    };
  };
  return {
    ...base,
    at: rep.startedAt,
    durationMs: rep.durationMs,
    scope: SCOPE[rep.scope ?? 'machines'],
    summary: rep.summary,
    level: levelOf(rep.summary.failures, rep.summary.warnings),
    parts: [part(null, '', rep.clusterChecks), ...rep.machines.map((m) => part(m.name, m.roles.join(', '), m.checks))],
  };
}

export function doctorView(
  cluster: string,
  runs: DoctorRun[],
  o: { running?: { by: string; since: string } | null; lastError?: string | null } = {},
): DoctorView {
  const order: DoctorSource[] = ['cli', 'dashboard'];
  return {
    cluster,
    reports: [...runs].sort((a, b) => order.indexOf(a.source) - order.indexOf(b.source)).map(reportView),
    running: o.running ?? null,
    lastError: o.lastError ?? null,
    command: 'vigil doctor -c vigil.yaml',
  };
}

/** The `doctor-run` event's sentence. */
export function doctorRunMessage(by: string, summary: { failures: number; warnings: number }, durationMs: number): string {
  const n = (k: number, word: string) => `${k} ${word}${k === 1 ? '' : 's'}`;
  return `doctor run from the dashboard by ${by}: ${n(summary.failures, 'failure')}, ${n(summary.warnings, 'warning')} in ${(durationMs / 1000).toFixed(1)} s (the cluster as the observer sees it)`;
}
