/**
 * Collects what the checks find: findings, and per machine (or the cluster) which checks ran,
 * so the report can say "ok" for a check that ran clean and "skipped" (with why) for one that
 * could not run, instead of silence.
 */
import type { CheckId, CheckResult, Finding, Severity } from './types.ts';

const key = (check: CheckId, machine: string | null) => `${machine ?? ''}\u0000${check}`;

export class Results {
  readonly findings: Finding[] = [];
  private readonly checks = new Map<string, { check: CheckId; machine: string | null; ran: boolean; note?: string }>();

  /** The check ran on this machine (findings, if any, are added separately). */
  ran(check: CheckId, machine: string | null): void {
    this.checks.set(key(check, machine), { check, machine, ran: true });
  }

  /** The check could not run here; a check that ran elsewhere for the same machine wins. */
  skip(check: CheckId, machine: string | null, note: string): void {
    const k = key(check, machine);
    if (!this.checks.get(k)?.ran) this.checks.set(k, { check, machine, ran: false, note });
  }

  add(f: Finding): void {
    this.ran(f.check, f.machine);
    this.findings.push(f);
  }

  fail(check: CheckId, machine: string | null, what: string, why: string, fix: string): void {
    this.add({ check, severity: 'fail', machine, what, why, fix });
  }

  warn(check: CheckId, machine: string | null, what: string, why: string, fix: string): void {
    this.add({ check, severity: 'warn', machine, what, why, fix });
  }

  /** Check results of one machine (null: the cluster as a whole), in the order checks were first seen. */
  statuses(machine: string | null): CheckResult[] {
    const out: CheckResult[] = [];
    for (const c of this.checks.values()) {
      if (c.machine !== machine) continue;
      const mine = this.findings.filter((f) => f.machine === machine && f.check === c.check).map((f) => f.severity);
      const worst: Severity | undefined = mine.includes('fail') ? 'fail' : mine.includes('warn') ? 'warn' : undefined;
      out.push(
        worst
          ? { check: c.check, status: worst }
          : c.ran
            ? { check: c.check, status: 'ok' }
            : { check: c.check, status: 'skipped', ...(c.note ? { note: c.note } : {}) },
      );
    }
    return out;
  }
}
