/**
 * The application's role and database, created through the proxy's primary port once Patroni
 * has bootstrapped the cluster. Idempotent: a re-run changes only a password that differs.
 */
import pg from 'pg';
import type { Cluster, Secrets } from '../config/schema.ts';
import { scramVerifier } from './scram.ts';

export async function ensureAppDatabase(cluster: Cluster, secrets: Secrets, host: string): Promise<void> {
  const { appUser, appDatabase, superuser } = cluster.database;
  const client = new pg.Client({
    host,
    port: cluster.proxy.postgresPort,
    user: superuser,
    password: secrets.postgresPassword,
    database: 'postgres',
    connectionTimeoutMillis: 2000,
    statement_timeout: 10_000,
  });
  client.on('error', () => {}); // a cut session surfaces on the pending query instead
  await client.connect();
  try {
    const role = client.escapeIdentifier(appUser);
    const verifier = client.escapeLiteral(scramVerifier(secrets.appDbPassword));
    const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [appUser]);
    await client.query(`${exists.rowCount ? 'ALTER' : 'CREATE'} ROLE ${role} LOGIN PASSWORD ${verifier}`);
    const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [appDatabase]);
    if (!db.rowCount) await client.query(`CREATE DATABASE ${client.escapeIdentifier(appDatabase)} OWNER ${role}`);
  } finally {
    await client.end().catch(() => {});
  }
}
