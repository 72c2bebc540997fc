/**
 * Strict patterns for cluster-file values that reach generated files, SQL, systemctl or a shell
 * (pg_hba.conf, the app database's SQL, haproxy.cfg, nginx.conf, unit arguments, rsync's forced
 * command). Each refusal names the value's problem and what to write instead; the loader puts the
 * file, line and field in front (src/config/load.ts). docs/config-reference.md lists the rules.
 */
import { z } from 'zod';

/**
 * A string field that must match `re`; `problem` says what is wrong, `fix` what to write. The
 * issue carries its fix in `params.fix`, which the loader prints as the problem's fix.
 */
export const strictText = (re: RegExp, problem: string, fix: string) => z.string().refine((v) => re.test(v), { message: problem, params: { fix } });

/**
 * A PostgreSQL role or database name as Vigil writes it into pg_hba.conf, SQL and the refapp's
 * properties: lower case, unquoted-identifier safe, at most 63 bytes (NAMEDATALEN - 1). Upper
 * case would need quoting everywhere psql, pgpass and the application meet it.
 */
export const PG_NAME_RE = /^[a-z_][a-z0-9_]{0,62}$/;
/** pg_hba.conf keywords that a name must not be (they would match every role or database). */
export const PG_HBA_KEYWORDS = ['all', 'sameuser', 'samerole', 'samegroup', 'replication'] as const;

export const pgName = (what: string, example: string) =>
  strictText(
    PG_NAME_RE,
    `must be a PostgreSQL ${what} name of lower case letters, digits and _ (starting with a letter or _, at most 63): it is written into pg_hba.conf and SQL`,
    `write e.g. \`${example}\``,
  ).refine((v) => !(PG_HBA_KEYWORDS as readonly string[]).includes(v), {
    message: `is a pg_hba.conf keyword (${PG_HBA_KEYWORDS.join(', ')}), which would match every ${what}`,
    params: { fix: `choose another name, e.g. \`${example}\`` },
  });

/**
 * An absolute path as it may appear unquoted in haproxy.cfg or nginx.conf (`crt PATH`,
 * `ssl_certificate PATH;`) or in an SSH command: no space, quote, `;`, `#` or newline, no `..`.
 */
export const SAFE_PATH_RE = /^\/[A-Za-z0-9._/-]+$/;
export const safePath = (what: string, example: string) =>
  strictText(
    SAFE_PATH_RE,
    `must be an absolute path of letters, digits and . _ / - (it is written unquoted into ${what})`,
    `write e.g. \`${example}\`; rename or link the file to such a path`,
  ).refine((p) => !p.split('/').includes('..'), { message: 'must not contain `..`', params: { fix: `write the path without \`..\`, e.g. \`${example}\`` } });

/**
 * A systemd unit name as the agent passes it to systemctl: systemd's own characters, no leading
 * `-` (it would be read as an option), and a `.service` or `.target` suffix.
 */
export const UNIT_RE = /^[A-Za-z0-9_][A-Za-z0-9:_.@-]{0,240}\.(service|target)$/;

/**
 * Trees file sync must never write: the receiver runs as root and mirrors the active machine's
 * directory, so `/etc` would put the active machine's system files on every standby. A sync
 * directory may not be one of these nor lie under one.
 */
export const SYSTEM_TREES = [
  '/etc',
  '/root',
  '/usr',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/boot',
  '/dev',
  '/proc',
  '/sys',
  '/run',
] as const;
/** Directories that hold other data: a sync directory may lie under them but not be one of them. */
export const SHARED_DIRS = ['/', '/var', '/var/lib', '/var/lib/vigil', '/var/log', '/var/tmp', '/tmp', '/home', '/opt', '/srv', '/mnt', '/media'] as const;
/** Vigil's and the database's own data, never synced. */
const DATA_TREES = ['/var/lib/postgresql', '/var/lib/pgsql', '/var/lib/etcd', '/etc/vigil'] as const;

/** Why `dir` may not be a sync directory, or undefined. `dir` already matches SAFE_PATH_RE. */
export function syncDirProblem(dir: string): string | undefined {
  const d = dir.replace(/\/+$/, '') || '/';
  if (d.split('/').includes('..')) return 'must not contain `..`';
  if (d.split('/').includes('.')) return 'must not contain `.` components';
  if (/\/\//.test(d)) return 'must not contain `//`';
  const under = (t: string) => d === t || d.startsWith(`${t}/`);
  const tree = [...SYSTEM_TREES, ...DATA_TREES].find(under);
  if (tree) return `lies in ${tree}, a system or data tree: the root receiver would overwrite it on every standby`;
  if ((SHARED_DIRS as readonly string[]).includes(d)) return `is ${d}, which holds more than the application's files: a reconciliation would replace all of it`;
  return undefined;
}

// `/` itself passes this, to be refused below with its reason.
const SYNC_DIR_RE = /^\/[A-Za-z0-9._/-]*$/;

export const syncDir = () =>
  strictText(
    SYNC_DIR_RE,
    'must be an absolute path of letters, digits and . _ / - (no spaces: it travels in an SSH command)',
    'write e.g. `/var/lib/servicedesk/attachments`',
  ).superRefine((d, ctx) => {
    const why = SYNC_DIR_RE.test(d) ? syncDirProblem(d) : undefined;
    if (why)
      ctx.addIssue({
        code: 'custom',
        message: why,
        params: { fix: "use the application's own data directory, e.g. `/var/lib/servicedesk/attachments` or `/opt/ServiceOps/attachments`" },
      });
  });
