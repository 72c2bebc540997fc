/**
 * `vigil airgap status`, and the `airgap` field of `vigil status --json`: the cluster's record
 * (the last bundle accepted, from etcd) and, for every app machine, the set its agent reports
 * (src/airgap/check.ts): which sequence it holds and whether its patch directory matches the
 * manifest. A machine whose agent does not answer is shown as unknown, never as matching.
 */
import type { AirgapRecord, AgentStatus, PatchDirState } from '../model/ha.ts';
import { withRole, type Cluster } from '../config/schema.ts';
import { describePatchDir } from '../airgap/check.ts';

export interface AirgapMachine {
  name: string;
  /** null: the agent did not answer, or reports no patch directory. */
  state: PatchDirState | null;
  /** Holds the cluster's last bundle, and its directory matches that bundle's manifest. */
  current: boolean;
}

export interface AirgapStatus {
  patchDir: string | null;
  last: AirgapRecord | null;
  machines: AirgapMachine[];
  /** Every app machine is current (false without a record: nothing was imported). */
  converged: boolean;
}

/** Builds the status from the record and the agents' answers (by machine name; undefined when an agent did not answer). */
export function airgapStatus(cluster: Cluster, last: AirgapRecord | null, agents: Map<string, AgentStatus | null | undefined>): AirgapStatus {
  const machines = withRole(cluster, 'app').map((m): AirgapMachine => {
    const state = agents.get(m.name)?.airgap ?? null;
    const current = !!(state && last && state.matches && state.sequence === last.sequence && state.manifestSha256 === last.manifestSha256);
    return { name: m.name, state, current };
  });
  return { patchDir: cluster.application.patchDir ?? null, last, machines, converged: !!last && machines.every((m) => m.current) };
}

export function formatAirgapStatus(s: AirgapStatus): string {
  const lines: string[] = [];
  if (!s.patchDir) return 'air gap: no application.patchDir in the cluster file (docs/airgap.md)';
  lines.push(
    `patch directory ${s.patchDir}; the cluster's last import: ${
      s.last
        ? `sequence ${s.last.sequence} (bundle ${s.last.bundleId}) on ${s.last.node} at ${s.last.importedAt}${s.last.backup ? `, backup ${s.last.backup.machine}:${s.last.backup.path}` : ''}`
        : 'none'
    }`,
  );
  for (const m of s.machines) {
    const what = m.state ? describePatchDir(m.state) : 'UNKNOWN: its agent did not answer (or runs without application.patchDir)';
    const behind = m.state && s.last && m.state.sequence !== s.last.sequence ? ` BEHIND: the cluster is at ${s.last.sequence}` : '';
    lines.push(`  ${m.name.padEnd(10)} ${what}${behind}`);
  }
  lines.push(
    s.converged ? 'every app machine holds the last bundle' : s.last ? 'NOT every app machine holds the last bundle, unchanged' : 'nothing imported yet',
  );
  return lines.join('\n');
}
