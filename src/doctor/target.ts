/**
 * Which cluster doctor (and preflight) checks and how it reaches the machines: a cluster file,
 * with the admin's certificate in `pki/` beside it and SSH with the host keys pinned there. The
 * running lab is another target of the same shape, supplied by a checkout (src/lab/target.ts,
 * through src/cli/checkout.ts): nothing here knows the lab.
 */
import { dirname, join } from 'node:path';
import { loadCluster, loadSecrets } from '../config/load.ts';
import type { DoctorOptions } from './doctor.ts';
import { systemdFixes } from './fixes.ts';

export interface TargetOptions {
  config?: string;
}

export type DoctorTarget = Pick<DoctorOptions, 'cluster' | 'secrets' | 'platform' | 'fixes'> & Required<Pick<DoctorOptions, 'openShell' | 'pkiDir'>>;

export async function doctorTarget(o: TargetOptions): Promise<DoctorTarget> {
  const file = o.config ?? 'vigil.yaml';
  const cluster = await loadCluster(file);
  const secrets = await loadSecrets(cluster);
  // Loaded on use: the SSH transport (ssh2) is only needed here.
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
