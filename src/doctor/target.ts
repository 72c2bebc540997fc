/**
 * Which cluster doctor checks and how it reaches the machines: the running lab (its cluster
 * file, the lab admin's certificate, nsenter shells) or a cluster file with the admin's
 * certificate in `pki/` beside it and SSH with the host keys pinned there.
 */
import { dirname, isAbsolute, join } from 'node:path';
import { loadCluster, loadSecrets } from '../config/load.ts';
import { LAB_DIR, LAB_ID, clusterFilePath } from '../lab/paths.ts';
import { labHostPath, openLabShell } from '../lab/shell.ts';
import type { DoctorOptions } from './doctor.ts';
import { labFixes, systemdFixes } from './fixes.ts';

export interface TargetOptions {
  config?: string;
  lab?: boolean;
}

export type DoctorTarget = Pick<DoctorOptions, 'cluster' | 'secrets' | 'platform' | 'fixes' | 'openShell' | 'pkiDir'>;

export async function doctorTarget(o: TargetOptions): Promise<DoctorTarget> {
  if (o.lab) {
    const cluster = await loadCluster(clusterFilePath());
    const secrets = await loadSecrets(cluster);
    const secretsFile = isAbsolute(cluster.secretsFile) ? cluster.secretsFile : join(LAB_DIR, cluster.secretsFile);
    return {
      cluster,
      secrets,
      platform: 'lab',
      fixes: labFixes(LAB_ID, { secretsFile, hostPath: labHostPath }),
      openShell: (m) => openLabShell(m.name),
      pkiDir: join(LAB_DIR, 'pki'),
    };
  }
  const file = o.config ?? 'vigil.yaml';
  const cluster = await loadCluster(file);
  const secrets = await loadSecrets(cluster);
  // Loaded on use: the SSH transport (ssh2) is not needed for the lab.
  const { openClusterSsh } = await import('../remote/ssh.ts');
  return {
    cluster,
    secrets,
    platform: 'systemd',
    fixes: systemdFixes(cluster),
    openShell: (m) => openClusterSsh(file, m),
    pkiDir: join(dirname(file), 'pki'),
  };
}
