/**
 * From facts to the report: every check (pure functions in ./checks) over the gathered facts,
 * then the per-machine statuses, the summary and the exit status.
 */
import { checkAppTls } from './checks/app-tls.ts';
import { checkAgents, checkAirgap, checkAppVersion, checkClusterState, checkFileSync, checkServices } from './checks/app.ts';
import type { EvalContext } from './checks/context.ts';
import { checkEtcd, checkPatroni, checkReplication, checkStalePrimary } from './checks/database.ts';
import { checkClock, checkDisk, checkOwnership } from './checks/host.ts';
import { checkPorts, checkReachable } from './checks/network.ts';
import { checkHaproxy } from './checks/proxy.ts';
import { checkEntryPoint, entryHolders } from './checks/entry.ts';
import { checkBackendTls } from './checks/backend-tls.ts';
import { checkCertificates, checkPasswords } from './checks/security.ts';
import { Results } from './results.ts';
import type { DoctorReport, Finding } from './types.ts';

export type { EvalContext } from './checks/context.ts';

/** In the order a reader wants them: can we see it, can it talk, does it run, is it safe. */
const CHECKS: ((ctx: EvalContext, r: Results) => void)[] = [
  checkReachable,
  checkPorts,
  checkClusterState,
  checkEtcd,
  checkPatroni,
  checkReplication,
  checkStalePrimary,
  checkHaproxy,
  checkEntryPoint,
  checkAgents,
  checkServices,
  checkAppVersion,
  checkFileSync,
  checkAirgap,
  checkPasswords,
  checkAppTls,
  checkBackendTls,
  checkCertificates,
  checkOwnership,
  checkClock,
  checkDisk,
];

export function evaluate(ctx: EvalContext): Results {
  const r = new Results();
  for (const check of CHECKS) check(ctx, r);
  return r;
}

/**
 * The exit status: 1 when any finding is a failure, 0 otherwise; with `strict`, warnings count
 * as failures (for a cron job that must hear about a certificate expiring in 20 days).
 */
export function exitStatus(findings: Finding[], strict = false): number {
  return findings.some((f) => f.severity === 'fail' || (strict && f.severity === 'warn')) ? 1 : 0;
}

const order = (f: Finding) => (f.severity === 'fail' ? 0 : 1);

export function buildReport(ctx: EvalContext, r: Results, meta: { startedAt: Date; durationMs: number; strict?: boolean }): DoctorReport {
  const machineOrder = new Map(ctx.cluster.machines.map((m, i) => [m.name, i]));
  const findings = [...r.findings].sort((a, b) => (machineOrder.get(a.machine ?? '') ?? -1) - (machineOrder.get(b.machine ?? '') ?? -1) || order(a) - order(b));
  return {
    cluster: { name: ctx.cluster.cluster.name, source: ctx.cluster.source },
    platform: ctx.platform,
    startedAt: meta.startedAt.toISOString(),
    durationMs: Math.round(meta.durationMs),
    machines: ctx.facts.machines.map((m) => ({ name: m.name, address: m.address, roles: m.roles, reachable: m.reachable.ok, checks: r.statuses(m.name) })),
    clusterChecks: r.statuses(null),
    scope: ctx.facts.machines.some((m) => m.gathered === false) ? 'cluster' : 'machines',
    ...(ctx.cluster.proxy.virtualAddress !== undefined ? { entryPoint: { address: ctx.cluster.proxy.virtualAddress, holders: entryHolders(ctx) ?? [] } } : {}),
    findings,
    summary: { failures: findings.filter((f) => f.severity === 'fail').length, warnings: findings.filter((f) => f.severity === 'warn').length },
    exitStatus: exitStatus(findings, meta.strict),
  };
}
