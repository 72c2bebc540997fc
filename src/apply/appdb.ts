/**
 * The application's role and database on the primary, through the primary machine's shell: psql
 * as the superuser on PostgreSQL's local socket (pg_hba's `local ... trust`, whose directory only
 * postgres and root can enter). So neither the installer nor the lab needs a database port from
 * where it runs, and the superuser never logs in over the network.
 *
 * The application's password never leaves the admin's machine: the role's stored SCRAM verifier
 * is read back and compared with one computed here with the same salt and iterations, and when
 * it differs a new verifier travels on psql's standard input (src/render/appdb.ts). Idempotent:
 * a role and database that are as they should be get no statement at all.
 */
import { PATHS } from '../layout/paths.ts';
import type { Cluster, Secrets } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';
import { appDatabaseSql, quoteLiteral, scramVerifier } from '../render/appdb.ts';
import { postgresBinDir } from '../render/patroni.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface AppDbState {
  /** The role's stored password (a SCRAM verifier, or null for none); undefined when the role does not exist. */
  verifier: string | null | undefined;
  /** The database's owner; undefined when the database does not exist. */
  owner: string | undefined;
}

/** Where PostgreSQL's local socket is: the cluster's own directory and port unless a test says otherwise. */
export interface SocketAt {
  socketDir: string;
  port: number;
}

/** Runs SQL from standard input as the superuser on the local socket; unaligned, tuples only. */
async function psql(shell: RemoteShell, cluster: Cluster, sql: string, at?: SocketAt): Promise<string> {
  const db = cluster.database;
  const argv = [
    `${postgresBinDir(db.postgresVersion)}/psql`,
    '-h',
    at?.socketDir ?? PATHS.pgSocketDir,
    '-p',
    String(at?.port ?? db.port),
    '-U',
    db.superuser,
    '-d',
    'postgres',
    '-X',
    '-q',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-f',
    '-',
  ];
  const r = await shell.exec(argv, { input: sql, timeoutMs: 30_000 });
  if (r.code !== 0) {
    // psql quotes the failing statement after its first line (LINE 1: ..., STATEMENT: ...): keep only the error itself.
    const first =
      r.stderr
        .trim()
        .split('\n')[0]
        ?.replace(/SCRAM-SHA-256\$\S+/g, '<verifier>') ?? `exit ${r.code}`;
    throw new VigilError('REMOTE_COMMAND', [
      problem(
        `${shell.machine} psql`,
        `PostgreSQL refused the application's role and database statements: ${first}`,
        `read the PostgreSQL log on ${shell.machine} (${PATHS.pgData}/log), fix the cause and run \`vigil apply\` again`,
      ),
    ]);
  }
  return r.stdout;
}

/** The role's stored verifier and the database's owner, read on the primary. */
export async function readAppDbState(shell: RemoteShell, cluster: Cluster, at?: SocketAt): Promise<AppDbState> {
  const { appUser, appDatabase } = cluster.database;
  const out = await psql(
    shell,
    cluster,
    [
      `SELECT 'role|' || coalesce(rolpassword, '') FROM pg_catalog.pg_authid WHERE rolname = ${quoteLiteral(appUser)};`,
      `SELECT 'db|' || pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = ${quoteLiteral(appDatabase)};`,
    ].join('\n'),
    at,
  );
  const state: AppDbState = { verifier: undefined, owner: undefined };
  for (const line of out.split('\n')) {
    if (line.startsWith('role|')) state.verifier = line.slice(5) || null;
    else if (line.startsWith('db|')) state.owner = line.slice(3);
  }
  return state;
}

/** Whether `verifier` (PostgreSQL's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`) is the one of `password`. */
export function scramMatches(verifier: string, password: string): boolean {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/.exec(verifier);
  return !!m && scramVerifier(password, Buffer.from(m[2]!, 'base64'), Number(m[1])) === verifier;
}

/** What is not as the cluster file and the secrets say, in words; empty when nothing is. Pure. */
export function appDbDifferences(state: AppDbState, cluster: Cluster, secrets: Secrets): string[] {
  const { appUser, appDatabase } = cluster.database;
  const out: string[] = [];
  if (state.verifier === undefined) out.push(`create the role ${appUser}`);
  else if (state.verifier === null || !scramMatches(state.verifier, secrets.appDbPassword))
    out.push(`set the password of the role ${appUser} (it differs from appDbPassword)`);
  if (state.owner === undefined) out.push(`create the database ${appDatabase}`);
  return out;
}

/** Creates the role and the database, or sets the role's password, on the primary. */
export async function ensureAppDb(shell: RemoteShell, cluster: Cluster, secrets: Secrets, state: AppDbState, at?: SocketAt): Promise<void> {
  const steps = appDatabaseSql(cluster, secrets).filter((s) => !s.skipIfExists || state.owner === undefined);
  await psql(shell, cluster, steps.map((s) => `${s.sql};`).join('\n'), at);
}
