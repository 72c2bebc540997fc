/**
 * The application's role and database, created on the primary after Patroni has bootstrapped.
 *
 * Patroni 3.0.2 can create roles at bootstrap (`bootstrap.users`, removed in 4.0) but never
 * databases, and only at the very first start; a password change later would never reach the
 * database. So the installer runs these statements over a normal connection to the primary
 * (through :5000 or the local socket), idempotently, whenever it converges the cluster.
 *
 * The password never appears in a command line, and not even as plain text in the SQL: the
 * ALTER ROLE statement carries a SCRAM-SHA-256 verifier computed here (as psql's \password
 * does), so a server log with log_statement = all or a pg_stat_activity sample shows only the
 * verifier, from which the password cannot be recovered.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import type { Cluster, Secrets } from '../config/schema.ts';

export interface SqlStep {
  /** What the step does, for progress output. Never contains a secret. */
  what: string;
  sql: string;
  /** Run `sql` only when this query returns no row (CREATE DATABASE cannot sit in a DO block). */
  skipIfExists?: string;
  /** `sql` holds a password verifier: do not log it. */
  sensitive?: boolean;
}

/** SQL identifier, always quoted (names come from the cluster file). */
export const quoteIdent = (s: string): string => `"${s.replaceAll('"', '""')}"`;
/** SQL string literal, standard_conforming_strings on (the default since 9.1). */
export const quoteLiteral = (s: string): string => `'${s.replaceAll("'", "''")}'`;

const SCRAM_ITERATIONS = 4096; // PostgreSQL's scram_iterations default

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, PostgreSQL's
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` format). PostgreSQL normalises the
 * password with SASLprep first; NFKC is the part of SASLprep that changes printable text, and
 * for ASCII passwords both are the identity.
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = SCRAM_ITERATIONS): string {
  const salted = pbkdf2Sync(Buffer.from(password.normalize('NFKC'), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Statements that create (or update) the application's login role and database. Idempotent:
 * running them again only resets the password to the one in the secrets file.
 */
export function appDatabaseSql(cluster: Cluster, secrets: Secrets, salt?: Buffer): SqlStep[] {
  const { appUser, appDatabase } = cluster.database;
  const role = quoteIdent(appUser);
  const db = quoteIdent(appDatabase);
  return [
    {
      what: `create role ${appUser}`,
      // A tag of our own rather than `$$`: nothing in a quoted name can end the body early.
      sql: `DO $vigil$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${quoteLiteral(appUser)}) THEN CREATE ROLE ${role} LOGIN; END IF; END $vigil$`,
    },
    {
      what: `set the password of ${appUser}`,
      sql: `ALTER ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION PASSWORD ${quoteLiteral(scramVerifier(secrets.appDbPassword, salt))}`,
      sensitive: true,
    },
    {
      what: `create database ${appDatabase}`,
      // template0: encoding and locale come from initdb's (UTF8, C.UTF-8) without template1 extras.
      sql: `CREATE DATABASE ${db} OWNER ${role} ENCODING 'UTF8' TEMPLATE template0`,
      skipIfExists: `SELECT 1 FROM pg_catalog.pg_database WHERE datname = ${quoteLiteral(appDatabase)}`,
    },
    {
      what: `restrict ${appDatabase} to its owner`,
      sql: `REVOKE ALL ON DATABASE ${db} FROM PUBLIC`,
    },
  ];
}
