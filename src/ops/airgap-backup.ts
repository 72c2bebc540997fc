/**
 * The database backup an air-gap import takes first (the seed tells the admin to back up the
 * master's database by hand before importing patches). pg_dump in its custom format, run on the
 * PostgreSQL primary as the superuser on the local socket (pg_hba's `local ... trust`, as
 * src/apply/appdb.ts does), so no password travels and the dump's version is the server's own.
 * Why pg_dump and not pg_basebackup or pgBackRest: a patch changes the application, and the
 * undo an operator wants is the application's database as it was, restorable with pg_restore
 * into any PostgreSQL of that version or later, one file per import; a physical backup restores
 * a whole cluster and pgBackRest needs a repository and its own configuration on every machine.
 *
 * The dump is written under a temporary name, checked with `pg_restore --list` (a dump that
 * cannot be read is no backup), then renamed; the newest `keep` are kept.
 */
import { postgresBinDir } from '../render/patroni.ts';
import { PATHS } from '../layout/paths.ts';
import type { Cluster, Machine } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';
import { VigilError, problem } from '../util/errors.ts';

/** Where the backups are, on the primary at the time of the import. */
export const BACKUP_DIR = '/var/backups/vigil/airgap';
export const BACKUP_KEEP = 5;

/** `before-seq0007-<8 of the bundle id>-20261207T120000Z.dump`: which bundle it preceded, and when. */
export function backupName(sequence: number, bundleId: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `before-seq${String(sequence).padStart(4, '0')}-${bundleId.slice(0, 8)}-${stamp}.dump`;
}

const SCRIPT = [
  'set -e',
  'bin=$1 sock=$2 port=$3 user=$4 db=$5 dir=$6 name=$7 keep=$8',
  'mkdir -p "$dir" && chmod 700 "$dir"',
  'tmp="$dir/.$name.partial"',
  'trap \'rm -f "$tmp"\' EXIT',
  '"$bin/pg_dump" -h "$sock" -p "$port" -U "$user" -Fc -f "$tmp" "$db"',
  '"$bin/pg_restore" --list "$tmp" > /dev/null',
  'sync "$tmp" 2>/dev/null || true',
  'mv "$tmp" "$dir/$name"',
  'trap - EXIT',
  'ls -1t "$dir"/before-seq*.dump | tail -n +$((keep + 1)) | while read -r old; do rm -f -- "$old"; done',
  'stat -c %s "$dir/$name"',
].join('\n');

export interface Backup {
  machine: string;
  path: string;
  bytes: number;
}

/**
 * Dumps the application's database on `primary` into BACKUP_DIR/`name`. Any failure throws
 * AIRGAP_BACKUP naming the machine and pg_dump's own message: the import does not go on.
 */
export async function backupDatabase(cluster: Cluster, primary: Machine, shell: RemoteShell, name: string, keep = BACKUP_KEEP): Promise<Backup> {
  const db = cluster.database;
  const r = await shell.exec(
    [
      'sh',
      '-c',
      SCRIPT,
      'vigil-airgap-backup',
      postgresBinDir(db.postgresVersion),
      PATHS.pgSocketDir,
      String(db.port),
      db.superuser,
      db.appDatabase,
      BACKUP_DIR,
      name,
      String(keep),
    ],
    { timeoutMs: 3_600_000 },
  );
  const bytes = Number(r.stdout.trim().split('\n').at(-1));
  if (r.code !== 0 || !Number.isFinite(bytes)) {
    throw new VigilError('AIRGAP_BACKUP', [
      problem(
        `${primary.name} ${BACKUP_DIR}/${name}`,
        `the database backup failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400) || 'no message'}`,
        `nothing was imported. Fix the cause (disk space on ${primary.name}: \`df -h ${BACKUP_DIR}\`; PostgreSQL running there) and run the import again`,
      ),
    ]);
  }
  return { machine: primary.name, path: `${BACKUP_DIR}/${name}`, bytes };
}
