/** `vigil doctor`'s human output: grouped by machine, failures first, each with why and fix. */
import type { CheckResult, DoctorReport, Finding } from './types.ts';

const LABEL = { fail: 'FAIL', warn: 'WARN' } as const;

function indent(text: string, pad: string): string {
  return text.split('\n').join(`\n${pad}`);
}

function group(lines: string[], title: string, checks: CheckResult[], findings: Finding[]): void {
  lines.push(title);
  const ok = checks.filter((c) => c.status === 'ok').map((c) => c.check);
  if (ok.length) lines.push(`  ok       ${ok.join(', ')}`);
  for (const f of findings) {
    lines.push(`  ${LABEL[f.severity]}     ${f.check}: ${indent(f.what, '           ')}`);
    lines.push(`           why: ${f.why}`);
    lines.push(`           fix: ${f.fix}`);
  }
  for (const c of checks.filter((x) => x.status === 'skipped')) lines.push(`  skipped  ${c.check}${c.note ? `: ${c.note}` : ''}`);
  lines.push('');
}

export function formatReport(report: DoctorReport): string {
  const lines: string[] = [];
  const n = report.machines.length;
  lines.push(
    `vigil doctor: cluster ${report.cluster.name} (${report.platform === 'lab' ? 'the lab' : report.cluster.source}), ${n} machine${n === 1 ? '' : 's'}, checked in ${(report.durationMs / 1000).toFixed(1)} s`,
  );
  if (report.entryPoint) {
    const { address, holders } = report.entryPoint;
    lines.push(`entry address ${address}: ${holders.length ? `held by ${holders.join(' and ')}` : 'held by no reachable proxy machine'}`);
  }
  lines.push('');
  for (const m of report.machines) {
    group(
      lines,
      `${m.name}  ${m.address}  ${m.roles.join(',')}${m.reachable ? '' : '  UNREACHABLE'}`,
      m.checks,
      report.findings.filter((f) => f.machine === m.name),
    );
  }
  const clusterFindings = report.findings.filter((f) => f.machine === null);
  if (report.clusterChecks.length || clusterFindings.length) group(lines, 'cluster', report.clusterChecks, clusterFindings);
  const { failures, warnings } = report.summary;
  if (failures === 0 && warnings === 0) lines.push('healthy: every check passed');
  else lines.push(`${failures} failure${failures === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`);
  return lines.join('\n');
}
