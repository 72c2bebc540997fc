/**
 * `vigil dashboard user`: the dashboard's users in the secrets file (`dashboardUsers`), changed
 * without opening the file by hand. A password is generated (or read from standard input, never
 * an argument), only its scrypt hash goes into the secrets file, and a generated one is written
 * to `dashboard-NAME.password` beside the cluster file (mode 600) for the operator to hand over.
 * The file's comments and other keys stay as they were; the result is checked against the schema
 * before it replaces the file (a temporary file, mode 600, then a rename), so a failed change
 * leaves the file as it was. The observers take the change at the next `vigil apply`.
 */
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isMap, isSeq, parseDocument } from 'yaml';
import { loadCluster, loadSecrets, parseSecrets, secretsPath } from '../config/load.ts';
import { DASHBOARD_ROLES, type DashboardRole } from '../config/schema.ts';
import { hashPassword, newDashboardPassword } from '../dashboard/users.ts';
import { VigilError, problem } from '../util/errors.ts';

export const USER_NAME_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

export type UserChange = { kind: 'set'; name: string; role: DashboardRole; passwordHash: string } | { kind: 'remove'; name: string };

/** The secrets file's text with one user set (added, or its role and password replaced) or removed. */
export function editDashboardUsers(text: string, change: UserChange, file: string): string {
  if (!USER_NAME_RE.test(change.name))
    throw new VigilError('USAGE', [problem('NAME', `"${change.name}" is not a user name`, 'use 1 to 64 letters, digits or _ . @ -')]);
  const doc = parseDocument(text);
  const current = doc.get('dashboardUsers');
  if (current !== undefined && current !== null && !isSeq(current))
    throw new VigilError('SECRETS_INVALID', [
      problem(`${file} dashboardUsers`, 'is not a list', 'make it a list of { name, role, passwordHash }, or remove it'),
    ]);
  const items = isSeq(current) ? current.items : [];
  const at = items.findIndex((u) => isMap(u) && u.get('name') === change.name);
  if (change.kind === 'remove') {
    if (at < 0) throw new VigilError('USAGE', [problem(`${file} dashboardUsers`, `has no user "${change.name}"`, '`vigil dashboard user list` names them')]);
    (current as { items: unknown[] }).items.splice(at, 1);
  } else {
    const node = doc.createNode({ name: change.name, role: change.role, passwordHash: change.passwordHash });
    if (isSeq(current)) {
      if (at >= 0) current.items[at] = node;
      else current.items.push(node);
    } else doc.set('dashboardUsers', doc.createNode([{ name: change.name, role: change.role, passwordHash: change.passwordHash }]));
  }
  return doc.toString({ lineWidth: 0 });
}

/** Replaces `path` by `content` (mode 600): a temporary file beside it, then a rename. */
async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export interface UserChangeResult {
  secretsFile: string;
  /** Where a generated password was written (mode 600); absent when it came from standard input or the user was removed. */
  passwordFile?: string;
}

/**
 * Sets or removes one user in the cluster's secrets file. `password` null: generate one and write it
 * beside the cluster file.
 */
export async function changeDashboardUser(
  clusterFile: string,
  o: { kind: 'set'; name: string; role: string; password: string | null } | { kind: 'remove'; name: string },
): Promise<UserChangeResult> {
  const cluster = await loadCluster(clusterFile);
  await loadSecrets(cluster); // the file is there, mode 600, and valid before it is changed
  const file = secretsPath(cluster);
  const text = await readFile(file, 'utf8');
  let change: UserChange;
  let generated: string | null = null;
  if (o.kind === 'set') {
    if (!(DASHBOARD_ROLES as readonly string[]).includes(o.role))
      throw new VigilError('USAGE', [problem('--role', `"${o.role}" is not a role`, `use one of ${DASHBOARD_ROLES.join(', ')}`)]);
    if (o.password !== null && o.password.length < 12)
      throw new VigilError('USAGE', [
        problem('standard input', 'the password has fewer than 12 characters', 'give a longer one, or leave out --password-stdin to have one generated'),
      ]);
    generated = o.password === null ? newDashboardPassword() : null;
    change = { kind: 'set', name: o.name, role: o.role as DashboardRole, passwordHash: await hashPassword(o.password ?? generated!) };
  } else change = { kind: 'remove', name: o.name };
  const next = editDashboardUsers(text, change, file);
  parseSecrets(next, file); // the whole file still fits the schema, or nothing is written
  const passwordFile = generated !== null ? join(dirname(clusterFile), `dashboard-${o.name}.password`) : undefined;
  if (passwordFile) await replaceFile(passwordFile, `${generated}\n`);
  await replaceFile(file, next);
  return { secretsFile: file, ...(passwordFile ? { passwordFile } : {}) };
}

/** The users as the secrets file names them (never their hashes). */
export async function listDashboardUsers(clusterFile: string): Promise<{ name: string; role: DashboardRole }[]> {
  const secrets = await loadSecrets(await loadCluster(clusterFile));
  return (secrets.dashboardUsers ?? []).map(({ name, role }) => ({ name, role }));
}
