/**
 * Runs the application's role-and-database statements (src/render/appdb.ts) on the primary, as
 * the superuser, through the proxy's primary port. Idempotent, so a re-run is safe.
 */
import pg from 'pg';
import type { Cluster, Secrets } from '../config/schema.ts';
import { appDatabaseSql } from '../render/appdb.ts';

export async function ensureAppDatabase(cluster: Cluster, secrets: Secrets, host: string): Promise<void> {
  const client = new pg.Client({
    host,
    port: cluster.proxy.postgresPort,
    user: cluster.database.superuser,
    password: secrets.postgresPassword,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
    statement_timeout: 10_000,
  });
  client.on('error', () => {}); // a cut session surfaces on the pending query instead
  await client.connect();
  try {
    for (const step of appDatabaseSql(cluster, secrets)) {
      if (step.skipIfExists && (await client.query(step.skipIfExists)).rowCount) continue;
      await client.query(step.sql);
    }
  } finally {
    await client.end().catch(() => {});
  }
}
