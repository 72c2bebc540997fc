/**
 * What `vigil init` needs to know, from an answers file (`--answers answers.yaml`), from flags,
 * or from the wizard. The answers file is vigil.yaml's own shape (docs/init.md) plus three
 * things vigil.yaml never holds: `ssh:` defaults for every machine, the SSH passwords used once
 * to install the admin key (`ssh.password`, `machines.NAME.sshPassword`), and `passwords:`, the
 * secrets to put in vigil.secrets.yaml instead of generated ones.
 *
 * Validation reports every problem at once with FILE:LINE field, what is wrong and the fix, like
 * src/config/load.ts. The cluster part is checked by the cluster file's own schema and rules
 * (through the vigil.yaml it becomes), so the answers file cannot accept what vigil.yaml would
 * refuse; those problems are pointed back at the answers file's lines. No message quotes a value
 * from the answers file: it may hold passwords.
 */
import { stat, readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { byLine, locator } from '../config/load.ts';
import { closest, dotted, type Locator } from '../config/cross-checks.ts';
import { TOPOLOGIES, type Role, type Topology } from '../config/schema.ts';
import { VigilError, problem, type Problem } from '../util/errors.ts';

type Path = readonly PropertyKey[];

export interface MachineAnswer {
  name: string;
  address: string;
  /** Left out for the machines a preset names. */
  roles?: Role[];
  sshUser?: string;
  sshPort?: number;
  /** Used once to install the admin key on this machine; never written. */
  sshPassword?: string;
}

export const PASSWORD_KEYS = ['postgres', 'replication', 'appDb', 'patroniRest', 'vrrp', 'smtp', 'webhookToken'] as const;
export type PasswordKey = (typeof PASSWORD_KEYS)[number];

/** Sections of vigil.yaml taken over as written; the cluster schema checks them. */
export const PASSTHROUGH_SECTIONS = ['database', 'timers', 'proxy', 'application', 'fileSync', 'alerts'] as const;
export type PassthroughSection = (typeof PASSTHROUGH_SECTIONS)[number];

export interface InitAnswers {
  clusterName?: string;
  topology: Topology;
  /** Defaults for every machine that does not set its own. */
  ssh: { user: string; port: number; password?: string };
  machines: MachineAnswer[];
  sections: Partial<Record<PassthroughSection, unknown>>;
  /** Given secrets; the database ones left out are generated. */
  passwords: Partial<Record<PasswordKey, string>>;
}

const anything = z.unknown();
const optionalText = z.string().min(1).optional();
const dbPassword = z.string().min(8).optional();

/** Only the answers' own fields are typed here; what becomes vigil.yaml is checked as vigil.yaml. */
export const answersSchema = z.strictObject({
  cluster: anything.optional(),
  topology: z.enum(TOPOLOGIES),
  ssh: z
    .strictObject({
      user: z.string().min(1).optional(),
      port: z.number().int().min(1).max(65535).optional(),
      password: optionalText,
    })
    .optional(),
  machines: z.record(
    z.string(),
    z.strictObject({
      address: anything,
      roles: anything.optional(),
      sshUser: anything.optional(),
      sshPort: anything.optional(),
      sshPassword: optionalText,
    }),
  ),
  database: anything.optional(),
  timers: anything.optional(),
  proxy: anything.optional(),
  application: anything.optional(),
  fileSync: anything.optional(),
  alerts: anything.optional(),
  passwords: z
    .strictObject({
      postgres: dbPassword,
      replication: dbPassword,
      appDb: dbPassword,
      patroniRest: dbPassword,
      // keepalived's VRRP password, with proxy.virtualAddress; generated when left out.
      vrrp: dbPassword,
      smtp: optionalText,
      webhookToken: optionalText,
    })
    .optional(),
});

const FIELD_FIXES: Record<string, string> = {
  topology: `write one of: ${TOPOLOGIES.join(', ')}`,
  machines: 'list the machines by name, e.g. `app1: { address: 10.0.0.11 }`',
  'ssh.port': 'write a port number such as 22',
  'ssh.user': 'write the user Vigil logs in as, e.g. root',
  'ssh.password': "write the password in single quotes, e.g. password: '...'; or leave it out and install the admin key yourself",
  sshPassword: 'write the password in single quotes; or leave it out to use ssh.password',
  passwords: 'write it in single quotes, at least 8 characters; or leave it out and init generates one',
};

function fixFor(path: Path): string {
  const key = dotted(path);
  const lastKey = String(path[path.length - 1] ?? '');
  if (path[0] === 'passwords') return lastKey === 'smtp' || lastKey === 'webhookToken' ? "write it in single quotes, e.g. smtp: '...'" : FIELD_FIXES.passwords!;
  return FIELD_FIXES[key] ?? FIELD_FIXES[lastKey] ?? 'see docs/init.md for the answers file format';
}

function issueProblem(issue: z.core.$ZodIssue, loc: Locator, data: unknown): Problem[] {
  const path = issue.path;
  const where = loc.at(path);
  const name = path.length ? `\`${String(path[path.length - 1])}\`` : 'the answers file';
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = path.length === 0 ? Object.keys(answersSchema.shape) : allowedKeys(path);
      return issue.keys.map((k) => {
        const guess = closest(k, allowed);
        return problem(
          loc.at([...path, k]),
          `unknown key \`${k}\``,
          `${guess ? `did you mean \`${guess}\`?` : 'remove it;'} Allowed here: ${allowed.join(', ')}`,
        );
      });
    }
    case 'invalid_value': {
      const guess = path.length ? closest(String(valueAt(data, path)), issue.values.map(String)) : undefined;
      return [problem(where, `${name} is not an allowed value`, `write one of: ${issue.values.join(', ')}${guess ? ` (did you mean \`${guess}\`?)` : ''}`)];
    }
    case 'invalid_type': {
      const v = valueAt(data, path);
      if (path.length === 0) return [problem(where, 'the answers file must be a map of `key: value` lines', 'start from the example in docs/init.md')];
      if (v === undefined) return [problem(where, `${name} is required`, fixFor(path))];
      const expected =
        issue.expected === 'record' || issue.expected === 'object' ? 'a map' : issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`;
      return [problem(where, `${name} must be ${expected}`, fixFor(path))];
    }
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? `at least ${String(issue.minimum)}` : `at most ${String(issue.maximum)}`;
      const unit = issue.origin === 'string' ? ' characters long' : '';
      return [problem(where, `${name} must be ${bound}${unit}`, fixFor(path))];
    }
    default:
      return [problem(where, `${name}: ${issue.message}`, fixFor(path))];
  }
}

function allowedKeys(path: Path): string[] {
  if (path[0] === 'ssh') return ['user', 'port', 'password'];
  if (path[0] === 'passwords') return [...PASSWORD_KEYS];
  if (path[0] === 'machines') return ['address', 'roles', 'sshUser', 'sshPort', 'sshPassword'];
  return [];
}

function valueAt(data: unknown, path: Path): unknown {
  return path.reduce<unknown>((v, seg) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[seg] : undefined), data);
}

// ---------------------------------------------------------------- YAML with lines

/** A locator for values that came from the command line. */
export function flagLocator(flags: (path: Path) => string | undefined, fallback: Locator): Locator {
  return { at: (path) => flags(path) ?? fallback.at(path), has: (path) => flags(path) !== undefined || fallback.has(path) };
}

/** `machines.app1.roles[0]` → ['machines', 'app1', 'roles', 0] (machine names hold no dots). */
export function undotted(s: string): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const part of s.split('.')) {
    const m = /^([^[]*)((\[\d+\])*)$/.exec(part);
    if (!m) return [...out, part];
    if (m[1]) out.push(m[1]);
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) out.push(Number(idx[1]));
  }
  return out;
}

export interface AnswersData {
  data: unknown;
  loc: Locator;
}

/** Parses an answers file's YAML, keeping lines; throws VigilError('INIT') on a syntax error. Pure. */
export function readAnswersYaml(text: string, source: string): AnswersData {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true });
  const errors = [...doc.errors, ...doc.warnings];
  if (errors.length > 0) {
    // The parser's own message may quote the line, which may hold a password: only its code is shown.
    const problems = errors.map((e) =>
      problem(
        `${source}:${e.linePos?.[0].line ?? lc.linePos(e.pos[0]).line}`,
        `YAML syntax: ${e.code.toLowerCase().replace(/_/g, ' ')}`,
        'correct the YAML at this line: `key: value` pairs, nested keys indented with spaces; put passwords in single quotes',
      ),
    );
    throw new VigilError('INIT', byLine(problems));
  }
  return { data: doc.toJS({ maxAliasCount: 100 }) as unknown, loc: locator(doc, lc, source) };
}

const rec = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * Checks the answers' own fields and normalises the answers. When some are wrong, the answers
 * are still built as far as they go (wrong values left out), so the cluster checks that follow
 * (render.ts `checkAnswers`) can report their problems in the same run.
 */
export function answerProblems(data: unknown, loc: Locator): { answers: InitAnswers; problems: Problem[] } {
  const r = answersSchema.safeParse(data);
  const problems: Problem[] = r.success ? [] : r.error.issues.flatMap((i) => issueProblem(i, loc, data));
  const d = rec(data);
  const ssh = rec(d.ssh);
  const machinesData = rec(d.machines);
  if (d.machines !== undefined && Object.keys(machinesData).length === 0)
    problems.push(problem(loc.at(['machines']), 'no machines are listed', FIELD_FIXES.machines!));
  const machines: MachineAnswer[] = Object.entries(machinesData).map(([name, raw]) => {
    const m = rec(raw);
    return {
      name,
      address: m.address as string,
      ...(m.roles !== undefined ? { roles: m.roles as Role[] } : {}),
      ...(m.sshUser !== undefined ? { sshUser: m.sshUser as string } : {}),
      ...(m.sshPort !== undefined ? { sshPort: m.sshPort as number } : {}),
      ...(str(m.sshPassword) !== undefined ? { sshPassword: str(m.sshPassword)! } : {}),
    };
  });
  const sections: InitAnswers['sections'] = {};
  for (const s of PASSTHROUGH_SECTIONS) if (d[s] !== undefined) sections[s] = d[s];
  const passwords: InitAnswers['passwords'] = {};
  for (const k of PASSWORD_KEYS) if (str(rec(d.passwords)[k]) !== undefined) passwords[k] = str(rec(d.passwords)[k])!;
  const cluster = d.cluster;
  if (cluster !== undefined && (typeof cluster !== 'object' || cluster === null || Object.keys(cluster).some((k) => k !== 'name'))) {
    problems.push(problem(loc.at(['cluster']), '`cluster` holds only `name`', 'write `cluster: { name: servicedesk }`'));
  }
  const name = rec(cluster).name;
  const answers: InitAnswers = {
    ...(name !== undefined ? { clusterName: name as string } : {}),
    topology: (d.topology ?? 'custom') as Topology,
    ssh: {
      user: str(ssh.user) ?? 'root',
      port: typeof ssh.port === 'number' ? ssh.port : 22,
      ...(str(ssh.password) !== undefined ? { password: str(ssh.password)! } : {}),
    },
    machines,
    sections,
    passwords,
  };
  problems.push(...passwordProblems(answers, loc));
  return { answers, problems };
}

/** Passwords that would never be used, and the SMTP password a login needs. */
function passwordProblems(a: InitAnswers, loc: Locator): Problem[] {
  const out: Problem[] = [];
  const alerts = (a.sections.alerts ?? {}) as { email?: { smtp?: { user?: unknown } }; webhook?: unknown };
  const smtpUser = alerts.email?.smtp?.user;
  if (smtpUser !== undefined && a.passwords.smtp === undefined) {
    out.push(
      problem(
        loc.at(['alerts', 'email', 'smtp', 'user']),
        'an SMTP login is set but no SMTP password',
        "add `smtp: '...'` under `passwords:`, or remove `user` if the relay needs no login",
      ),
    );
  }
  if (a.passwords.smtp !== undefined && smtpUser === undefined) {
    out.push(
      problem(
        loc.at(['passwords', 'smtp']),
        'an SMTP password is given but `alerts.email.smtp.user` is not set, so it would never be used',
        'set alerts.email.smtp.user, or remove passwords.smtp',
      ),
    );
  }
  if (a.passwords.webhookToken !== undefined && alerts.webhook === undefined) {
    out.push(
      problem(
        loc.at(['passwords', 'webhookToken']),
        'a webhook token is given but `alerts.webhook` is not set',
        'set alerts.webhook.url, or remove passwords.webhookToken',
      ),
    );
  }
  return out;
}

/**
 * Reads an answers file (YAML, unchecked: flags may still be merged in). One that holds a
 * password must be readable by its owner only, like the secrets file.
 */
export async function loadAnswersData(path: string): Promise<AnswersData> {
  let text: string;
  let mode: number;
  try {
    mode = (await stat(path)).mode;
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VigilError(
      'INIT',
      [
        problem(
          path,
          code === 'ENOENT' ? 'the answers file does not exist' : `the answers file cannot be read (${code ?? String(err)})`,
          'check the path; docs/init.md shows the format',
        ),
      ],
      { cause: err },
    );
  }
  const parsed = readAnswersYaml(text, path);
  if ((mode & 0o077) !== 0 && holdsSecrets(parsed.data)) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new VigilError('INIT', [
      problem(
        path,
        `the answers file holds passwords and has mode ${octal}: group or others can read it`,
        `chmod 600 ${path} (and consider the passwords seen)`,
      ),
    ]);
  }
  return parsed;
}

function holdsSecrets(data: unknown): boolean {
  const d = (data ?? {}) as { passwords?: unknown; ssh?: { password?: unknown }; machines?: Record<string, { sshPassword?: unknown } | null> };
  const pw = d.passwords;
  if (pw && typeof pw === 'object' && Object.keys(pw).length > 0) return true;
  if (d.ssh && typeof d.ssh === 'object' && d.ssh.password !== undefined) return true;
  return Object.values(d.machines && typeof d.machines === 'object' ? d.machines : {}).some(
    (m) => m !== null && typeof m === 'object' && m.sshPassword !== undefined,
  );
}
