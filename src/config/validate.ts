/**
 * `vigil validate [FILE]`: checks the cluster file and its secrets file without touching any
 * machine, so an operator can fix the configuration before an install changes anything.
 */
import { readFile } from 'node:fs/promises';
import { clusterFileWarnings, loadCluster, loadSecrets, secretsPath } from './load.ts';
import { alertProblems } from './alerts.ts';
import { VigilError, formatProblem } from '../util/errors.ts';
import { withRole, type Cluster } from './schema.ts';

/** Failures a cluster of n etcd members survives: it needs a majority to keep working. */
const etcdTolerance = (n: number) => Math.floor((n - 1) / 2);

/** One paragraph a person can check against what they meant to build. */
export function summarize(c: Cluster): string {
  const machines = c.machines.map((m) => `${m.name} ${m.address} (${m.roles.join(', ')})`).join(', ');
  const etcd = withRole(c, 'etcd');
  const tolerance = etcdTolerance(etcd.length);
  const db = withRole(c, 'db');
  const replication =
    c.database.replication === 'synchronous'
      ? 'synchronous replication (no acknowledged write lost on failover)'
      : `asynchronous replication (a failover may lose up to ${c.database.maximumLagOnFailoverBytes} bytes of writes)`;
  return [
    `${c.source} is valid: cluster ${c.cluster.name}, topology ${c.topology}, ${c.machines.length} machines: ${machines}.`,
    `${etcd.length} etcd member${etcd.length === 1 ? '' : 's'} (${etcd.map((m) => m.name).join(', ')}), surviving ${tolerance} member failure${tolerance === 1 ? '' : 's'}.`,
    `PostgreSQL ${c.database.postgresVersion} on ${db.length} machine${db.length === 1 ? '' : 's'} with ${replication}.`,
    `Secrets: ${secretsPath(c)} (complete, readable by its owner only).`,
  ].join(' ');
}

/** Checks both files; prints the summary, or the resolved cluster as JSON. */
export async function validate(file: string, opts: { json?: boolean }): Promise<void> {
  const cluster = await loadCluster(file);
  // Loaded only to check it: the values never leave this function.
  const secrets = await loadSecrets(cluster);
  const alertIssues = alertProblems(cluster.alerts, secrets, cluster.source, secretsPath(cluster));
  if (alertIssues.length) throw new VigilError('CONFIG_INVALID', alertIssues);
  // Valid, but weaker than it could be: said on stderr so --json stays machine-readable.
  for (const w of clusterFileWarnings(await readFile(file, 'utf8'), cluster.source)) process.stderr.write(`warning: ${formatProblem(w)}\n`);
  process.stdout.write(opts.json ? `${JSON.stringify(cluster, null, 2)}\n` : `${summarize(cluster)}\n`);
}
