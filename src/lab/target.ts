/**
 * The running lab as a target of the operator commands, doctor and preflight (`vigil ... --lab`
 * from a checkout; src/cli/checkout.ts): its cluster file, the lab admin's certificate, shells
 * into its machines with nsenter, and `vigil lab` commands as fixes.
 */
import { isAbsolute, join } from 'node:path';
import type { LabTarget } from '../cli/checkout.ts';
import { loadCluster, loadSecrets } from '../config/load.ts';
import type { DoctorTarget } from '../doctor/target.ts';
import type { OpsOptions } from '../ops/context.ts';
import { labFixes } from './fixes.ts';
import { LAB_DIR, LAB_ID, clusterFilePath } from './paths.ts';

/** The running lab's cluster file and certificates, for `withOps` (tests and benchmarks use it as the CLI's `--lab` does). */
export const LAB_OPS = { target: { clusterFile: clusterFilePath(), pkiDir: join(LAB_DIR, 'pki') } } satisfies OpsOptions;

/** The running lab for doctor and preflight. */
export async function labDoctorTarget(): Promise<DoctorTarget> {
  const cluster = await loadCluster(clusterFilePath());
  const secrets = await loadSecrets(cluster);
  const secretsFile = isAbsolute(cluster.secretsFile) ? cluster.secretsFile : join(LAB_DIR, cluster.secretsFile);
  // Loaded on use: the lab's shell brings the lab's machine and state modules.
  const { labHostPath, openLabShell } = await import('./shell.ts');
  return {
    cluster,
    secrets,
    platform: 'lab',
    fixes: labFixes(LAB_ID, { secretsFile, hostPath: labHostPath }),
    openShell: (m) => openLabShell(m.name),
    pkiDir: join(LAB_DIR, 'pki'),
  };
}

export const labTarget: LabTarget = { ops: LAB_OPS, doctor: labDoctorTarget };
