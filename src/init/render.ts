/**
 * From answers to the text of vigil.yaml (commented, so the operator can read and edit it) and
 * vigil.secrets.yaml (given passwords, the rest generated). Pure apart from the random source.
 * Both are read back through the loaders every other command uses, so init never writes a file
 * that `vigil validate` would refuse; problems found that way are pointed back at the answers.
 */
import { randomBytes } from 'node:crypto';
import { Document, isMap, parseDocument, type Pair, type Scalar } from 'yaml';
import { alertProblems } from '../config/alerts.ts';
import type { Locator } from '../config/cross-checks.ts';
import { parseCluster, parseSecrets } from '../config/load.ts';
import { PRESET_ROLES, type Cluster, type Secrets } from '../config/schema.ts';
import { defaultEtcdMembers, type EtcdPlacement } from './etcd-members.ts';
import { VigilError, problem, type Problem } from '../util/errors.ts';
import { byLine } from '../config/load.ts';
import { answerProblems, readAnswersYaml, undotted, type InitAnswers, type PasswordKey } from './answers.ts';

export const CLUSTER_FILE = 'vigil.yaml';
export const SECRETS_FILE = 'vigil.secrets.yaml';

export interface RenderedInit {
  clusterYaml: string;
  secretsYaml: string;
  cluster: Cluster;
  secrets: Secrets;
  /** Which secrets were generated (the rest came from the answers). */
  generated: PasswordKey[];
}

export interface RenderOptions {
  /** Where the answers came from, to point problems at them (without it problems name vigil.yaml). */
  loc?: Locator;
  now?: Date;
  /** A new random password (tests make it predictable). */
  newPassword?: () => string;
}

/** 24 random bytes as base64url: 32 characters that need no quoting in YAML, properties or shell files. */
export const newPassword = (): string => randomBytes(24).toString('base64url');

const TOPOLOGY_NOTES: Record<InitAnswers['topology'], string> = {
  pair: ' pair: observer = etcd + HAProxy + observer; app1 and app2 = the application + PostgreSQL (Patroni).',
  distributed: ' distributed: observer = etcd + HAProxy + observer; app1, app2 = the application; db1, db2 = PostgreSQL (Patroni).',
  custom: ' custom: every machine lists its roles (etcd, proxy, observer, app, db).',
};

function keyNode(doc: Document, path: string[]): Scalar | undefined {
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((p: Pair) => String((p.key as Scalar).value) === path[path.length - 1]);
  return pair?.key as Scalar | undefined;
}

/** The cluster file as a plain object, in the order the file shows it. */
/**
 * `topology: custom` with no machine given the `etcd` role: init places the members itself (1, or 3
 * with two observer machines and a third machine: src/init/etcd-members.ts). Undefined when the
 * answers place them, a preset does, or a machine lacks its roles (the cluster file's check says so).
 */
export function initEtcdPlacement(a: InitAnswers): EtcdPlacement | undefined {
  if (a.topology !== 'custom' || a.machines.some((m) => m.roles === undefined)) return undefined;
  return defaultEtcdMembers(a.machines.map((m) => ({ name: m.name, roles: m.roles! })));
}

export function clusterDocument(a: InitAnswers): Record<string, unknown> {
  const machines: Record<string, Record<string, unknown>> = {};
  const etcd = initEtcdPlacement(a);
  for (const m0 of a.machines) {
    const m = etcd?.members.includes(m0.name) ? { ...m0, roles: [...m0.roles!, 'etcd' as const] } : m0;
    const user = m.sshUser ?? a.ssh.user;
    const port = m.sshPort ?? a.ssh.port;
    machines[m.name] = {
      address: m.address,
      ...(m.roles !== undefined ? { roles: m.roles } : {}),
      ...(user !== 'root' ? { sshUser: user } : {}),
      ...(port !== 22 ? { sshPort: port } : {}),
    };
  }
  return {
    cluster: { name: a.clusterName ?? 'vigil' },
    topology: a.topology,
    secretsFile: SECRETS_FILE,
    machines,
    ...a.sections,
  };
}

export function clusterYaml(a: InitAnswers, now: Date = new Date()): string {
  const doc = new Document(clusterDocument(a));
  doc.commentBefore = [
    ` The cluster file, written by \`vigil init\` on ${now.toISOString().slice(0, 10)}.`,
    ' Check it with `vigil validate`; every field is described in docs/config-reference.md.',
    ` Passwords are in ${SECRETS_FILE} (mode 600), never here. SSH host keys are pinned in`,
    ' vigil.known_hosts; Vigil logs in with ssh/id_ed25519; pki/ holds the cluster CA.',
  ].join('\n');
  const note = (path: string[], text: string) => {
    const k = keyNode(doc, path);
    if (k) k.commentBefore = text;
  };
  const topologyNote = TOPOLOGY_NOTES[a.topology] as string | undefined; // checks after this may still refuse the topology
  if (topologyNote) note(['topology'], topologyNote);
  note(['machines'], ' One entry per machine: the address the others reach it on, and its roles unless the preset gives them.');
  const preset: Record<string, string[]> = (PRESET_ROLES as Record<string, Record<string, string[]> | undefined>)[a.topology] ?? {};
  for (const m of a.machines) {
    const roles = m.roles ?? preset[m.name];
    const addr = doc.getIn(['machines', m.name, 'address'], true) as Scalar | undefined;
    if (addr && roles && m.roles === undefined) addr.comment = ` roles from the preset: ${roles.join(', ')}`;
  }
  const etcd = initEtcdPlacement(a);
  if (etcd)
    note(
      ['machines'],
      ` One entry per machine: the address the others reach it on, and its roles.\n ${etcd.why.replace('etcd: ', 'etcd placed by vigil init: ')}.`,
    );
  if (a.sections.database !== undefined)
    note(['database'], ' synchronous: no acknowledged write is lost on failover; asynchronous: bounded by maximumLagOnFailoverBytes.');
  if (a.sections.alerts !== undefined)
    note(['alerts'], " Alerts on failover, fencing, a machine lost or back, maintenance. An SMTP login's password is smtpPassword in the secrets file.");
  return doc.toString({ lineWidth: 0 });
}

export function secretsYaml(s: Secrets, generated: PasswordKey[]): string {
  const doc = new Document(s);
  doc.commentBefore = [
    ' The secrets of the cluster, written by `vigil init`. Keep this file readable by you only (mode 600)',
    ' and out of version control; back it up with the cluster CA (pki/ca.key).',
    generated.length ? ` Generated at random: ${generated.join(', ')}.` : ' Every password here was given in the answers.',
  ].join('\n');
  return doc.toString({ lineWidth: 0 });
}

/** The secrets file with the dashboard's first user, `admin`, whose password has the scrypt hash `passwordHash` (src/dashboard/users.ts). */
export function withDashboardAdmin(secretsText: string, passwordHash: string): string {
  const doc = parseDocument(secretsText);
  doc.set('dashboardUsers', doc.createNode([{ name: 'admin', role: 'admin', passwordHash }]));
  return doc.toString({ lineWidth: 0 });
}

/** Points a problem found in the vigil.yaml made from the answers back at the answers' line. */
function relocate(p: Problem, loc: Locator): Problem {
  const m = new RegExp(`^${CLUSTER_FILE.replace('.', '\\.')}:\\d+(?: (.+))?$`).exec(p.where);
  if (!m) return p;
  const path = m[1] ? undotted(m[1]) : [];
  // Machines without their own sshUser/sshPort took the `ssh:` defaults.
  if (path[0] === 'machines' && (path[2] === 'sshUser' || path[2] === 'sshPort') && !loc.has(path)) {
    return { ...p, where: loc.at(['ssh', path[2] === 'sshUser' ? 'user' : 'port']) };
  }
  return { ...p, where: loc.at(path) };
}

/** Renders both files and reads them back through the loaders; throws VigilError('INIT') with every problem. */
export function renderInit(a: InitAnswers, opts: RenderOptions = {}): RenderedInit {
  const text = clusterYaml(a, opts.now);
  let cluster: Cluster;
  try {
    cluster = parseCluster(text, CLUSTER_FILE);
  } catch (err) {
    if (!(err instanceof VigilError)) throw err;
    throw new VigilError('INIT', opts.loc ? err.problems.map((p) => relocate(p, opts.loc!)) : err.problems, { cause: err });
  }
  const gen = opts.newPassword ?? newPassword;
  const generated: PasswordKey[] = [];
  const pick = (k: PasswordKey): string => {
    const given = a.passwords[k];
    if (given !== undefined) return given;
    generated.push(k);
    return gen();
  };
  const secrets: Secrets = {
    postgresPassword: pick('postgres'),
    replicationPassword: pick('replication'),
    appDbPassword: pick('appDb'),
    patroniRestPassword: pick('patroniRest'),
    // Only a cluster with a floating entry address runs keepalived, which needs it.
    ...(cluster.proxy.virtualAddress !== undefined || a.passwords.vrrp !== undefined ? { vrrpPassword: pick('vrrp') } : {}),
    ...(a.passwords.smtp !== undefined ? { smtpPassword: a.passwords.smtp } : {}),
    ...(a.passwords.webhookToken !== undefined ? { webhookToken: a.passwords.webhookToken } : {}),
  };
  const sText = secretsYaml(secrets, generated);
  const problems = alertProblems(cluster.alerts, secrets, CLUSTER_FILE, SECRETS_FILE);
  if (problems.length > 0) {
    // "vigil.yaml alerts.email.smtp.starttls" has the same path in the answers; the secrets-file ones are caught earlier, in the answers' terms.
    const loc = opts.loc;
    const at = (p: Problem) => (loc && p.where.startsWith(`${CLUSTER_FILE} `) ? { ...p, where: loc.at(undotted(p.where.slice(CLUSTER_FILE.length + 1))) } : p);
    throw new VigilError('INIT', problems.map(at));
  }
  try {
    parseSecrets(sText, SECRETS_FILE);
  } catch (err) {
    // Never quotes a value; a given password that the loader refuses (e.g. a placeholder) is named by key.
    if (!(err instanceof VigilError)) throw err;
    throw new VigilError(
      'INIT',
      err.problems.map((p) => problem(p.where, p.message, `${p.fix} (in the answers: under passwords:)`)),
      { cause: err },
    );
  }
  return { clusterYaml: text, secretsYaml: sText, cluster, secrets, generated };
}

/**
 * Checks answers given as plain data (an answers file, flags) in one pass: the answers' own
 * fields and the vigil.yaml they make, every problem at once, each pointed at the answers.
 */
export function checkAnswers(data: unknown, loc: Locator): InitAnswers {
  const { answers, problems } = answerProblems(data, loc);
  try {
    parseCluster(clusterYaml(answers), CLUSTER_FILE);
  } catch (err) {
    if (!(err instanceof VigilError)) throw err;
    // A field the answers' own check already named is reported once, in the answers' words.
    const named = new Set(problems.map((p) => p.where));
    problems.push(...err.problems.map((p) => relocate(p, loc)).filter((p) => !named.has(p.where)));
  }
  if (problems.length > 0) throw new VigilError('INIT', byLine(problems));
  return answers;
}

/** Parses and checks the text of an answers file; throws VigilError('INIT') listing every problem. Pure. */
export function parseAnswers(text: string, source: string): InitAnswers {
  const { data, loc } = readAnswersYaml(text, source);
  return checkAnswers(data, loc);
}
