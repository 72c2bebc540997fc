/**
 * Reading the cluster file and the secrets file. Every problem names FILE:LINE field.path, says
 * what is wrong and what to write instead; all problems of a file are reported at once, so the
 * operator fixes the file in one pass instead of one error per run.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { VigilError, problem, type ErrorCode, type Problem } from '../util/errors.ts';
import { clusterFileSchema, ROLES, secretsSchema, type Cluster, type ClusterFile, type Secrets } from './schema.ts';
import { checkCluster, closest, clusterWarnings, dotted, resolveCluster, type Locator } from './cross-checks.ts';

export { CROSS_FIELD_RULES, type Locator } from './cross-checks.ts';

type Path = readonly PropertyKey[];

// ---------------------------------------------------------------- YAML with line numbers

const SYNTAX_FIXES: Record<string, string> = {
  BAD_INDENT: 'indent nested keys with spaces so they line up under their parent, and close every [ with ] and { with }',
  TAB_AS_INDENT: 'replace the tabs at the start of the line with spaces',
  DUPLICATE_KEY: 'keep only one key of this name in this block',
  MISSING_CHAR: 'add the missing closing character (a quote, ] or })',
  BLOCK_AS_IMPLICIT_KEY: 'write one `key: value` per line, nested keys on their own lines, indented; quote a value that contains ": "',
  MULTILINE_IMPLICIT_KEY: 'write one `key: value` per line; quote a value that contains ": "',
  MULTIPLE_DOCS: 'keep a single document: remove the second `---` and merge what follows into the first',
  BAD_DQ_ESCAPE: 'inside double quotes a backslash starts an escape: use single quotes, or write \\\\ for a backslash',
  BAD_SCALAR_START: 'quote the value in single quotes: it starts with a character YAML reserves (@, `, %, !, &, *, ...)',
  TAG_RESOLVE_FAILED: 'quote the value in single quotes: YAML reads a leading ! as a tag',
  UNEXPECTED_TOKEN: "quote the value in single quotes if it contains characters YAML reserves ([ ] { } , # : ')",
};
const SYNTAX_FIX_DEFAULT = 'correct the YAML at this line: `key: value` pairs, nested keys indented with spaces, lists as `- item` or [a, b]';

interface Parsed {
  data: unknown;
  loc: Locator;
  doc: Document;
}

/**
 * Parses YAML keeping line numbers. With `secret`, the parser's own messages are not shown at
 * all: they quote the offending line, a character or a token of it, which may be a password.
 */
function parseYaml(text: string, source: string, secret: boolean): Parsed {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: true });
  // Warnings count as errors: an unresolved tag turns `pw: !x1 y` into "y" without a word.
  const errors = [...doc.errors, ...doc.warnings];
  if (errors.length > 0) {
    const seen = new Set<string>();
    const problems: Problem[] = [];
    for (const e of errors) {
      const line = e.linePos?.[0].line ?? lineCounter.linePos(e.pos[0]).line;
      const where = `${source}:${line}`;
      if (seen.has(where)) continue; // the parser often reports one mistake twice
      seen.add(where);
      const generic = e.code.toLowerCase().replace(/_/g, ' ');
      const message = secret ? generic : (e.message.split(' at line ')[0] ?? generic);
      problems.push(problem(where, `YAML syntax: ${message}`, SYNTAX_FIXES[e.code] ?? SYNTAX_FIX_DEFAULT));
    }
    throw new VigilError('CONFIG_YAML', byLine(problems));
  }
  return { data: doc.toJS({ maxAliasCount: 100 }), loc: locator(doc, lineCounter, source), doc };
}

/** `FILE:LINE path` for a field of a parsed YAML document: the nearest existing node's line for a missing field. */
export function locator(doc: Document, lc: LineCounter, source: string): Locator {
  const lineOf = (offset: number | undefined) => (offset === undefined ? 1 : lc.linePos(offset).line);
  // Walks the path as far as it exists; returns the line of the deepest node reached and
  // whether the whole path was found. A map entry's line is its key's, where the field is named.
  const walk = (path: Path): { line: number; found: boolean } => {
    let node: unknown = doc.contents;
    let line = lineOf((doc.contents as Node | null)?.range?.[0]);
    for (const seg of path) {
      if (isAlias(node)) node = node.resolve(doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => String((p.key as { value?: unknown } | null)?.value) === String(seg));
        if (!pair) return { line, found: false };
        line = lineOf((pair.key as Node | null)?.range?.[0]);
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
        node = node.items[seg];
        line = lineOf((node as Node).range?.[0]);
      } else {
        return { line, found: false };
      }
    }
    return { line, found: true };
  };
  return {
    at: (path) => `${source}:${walk(path).line}${path.length ? ' ' + dotted(path) : ''}`,
    has: (path) => walk(path).found,
  };
}

// ---------------------------------------------------------------- zod issues → problems

type Schema = z.core.$ZodType;
interface Def {
  type: string;
  innerType?: Schema;
  shape?: Record<string, Schema>;
  valueType?: Schema;
  element?: Schema;
}
const defOf = (s: Schema) => s._zod.def as unknown as Def;

/** The schema of a field (defaults and optionals unwrapped) and its description. */
function schemaAt(root: Schema, path: Path): { schema?: Schema; description?: string } {
  let s: Schema | undefined = root;
  let description: string | undefined;
  const unwrap = () => {
    description = undefined;
    while (s) {
      description ??= z.globalRegistry.get(s)?.description;
      const inner: Schema | undefined = defOf(s).innerType;
      if (!inner) break;
      s = inner;
    }
  };
  unwrap();
  for (const seg of path) {
    if (!s) break;
    const d = defOf(s);
    s = d.type === 'object' ? d.shape?.[String(seg)] : d.type === 'record' ? d.valueType : d.type === 'array' ? d.element : undefined;
    unwrap();
  }
  return { schema: s, description };
}

const list = (xs: readonly unknown[]) => xs.map(String).join(', ');
const last = (path: Path) => String(path[path.length - 1] ?? 'value');
/** The field as the message names it: its own key; the full path is already in `where`. */
const named = (path: Path) => (path.length ? `\`${last(path)}\`` : 'the file');

interface IssueContext {
  root: Schema;
  data: unknown;
  loc: Locator;
  /** Secrets file: never quote a value. */
  secret: boolean;
}

type Issue<C extends z.core.$ZodIssue['code']> = Extract<z.core.$ZodIssue, { code: C }>;

function valueAt(data: unknown, path: Path): unknown {
  return path.reduce<unknown>((v, seg) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[seg] : undefined), data);
}

/** " (found …)" for scalars of the cluster file; nothing at all for the secrets file. */
function shown(ctx: IssueContext, path: Path): string {
  if (ctx.secret) return '';
  const v = valueAt(ctx.data, path);
  return v === null || typeof v === 'object' ? '' : ` (found ${JSON.stringify(v)})`;
}

function issueProblems(issue: z.core.$ZodIssue, ctx: IssueContext): Problem[] {
  const where = ctx.loc.at(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return unknownKeys(issue, ctx);
    case 'invalid_value': {
      const guess = ctx.secret ? undefined : closest(String(valueAt(ctx.data, issue.path)), issue.values.map(String));
      const hint = guess ? ` (did you mean \`${guess}\`?)` : '';
      return [problem(where, `${named(issue.path)} is not an allowed value${shown(ctx, issue.path)}`, `write one of: ${list(issue.values)}${hint}`)];
    }
    case 'invalid_key': {
      const key = last(issue.path);
      const rename =
        key
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, '-')
          .replace(/^[^a-z]+/, '') || 'm1';
      return [problem(where, `name \`${key}\`: ${issue.issues[0]?.message ?? 'not allowed'}`, `rename it, e.g. \`${rename}\``)];
    }
    case 'invalid_type':
      return [typeProblem(issue, ctx)];
    case 'too_small':
    case 'too_big':
      return [sizeProblem(issue, ctx)];
    case 'invalid_format':
      return [formatProblem(issue, ctx)];
    default: {
      // Our own rules (`strictText`, refinements) carry their fix in `params.fix`.
      const fix = (issue as { params?: { fix?: unknown } }).params?.fix;
      if (typeof fix === 'string') return [problem(where, `${named(issue.path)}: ${issue.message}${shown(ctx, issue.path)}`, fix)];
      return [problem(where, `${named(issue.path)}: ${issue.message}`, 'correct it: see docs/config-reference.md')];
    }
  }
}

function unknownKeys(issue: Issue<'unrecognized_keys'>, ctx: IssueContext): Problem[] {
  const allowed = Object.keys(defOf(schemaAt(ctx.root, issue.path).schema ?? ctx.root).shape ?? {});
  return issue.keys.map((key) => {
    const guess = closest(key, allowed);
    const fix = `${guess ? `did you mean \`${guess}\`?` : 'remove it;'} Allowed keys here: ${list(allowed)}`;
    return problem(ctx.loc.at([...issue.path, key]), `unknown key \`${key}\``, fix);
  });
}

function formatProblem(issue: Issue<'invalid_format'>, ctx: IssueContext): Problem {
  const prefix = (issue as { prefix?: string }).prefix;
  // Schema messages that do not start with "Invalid" are ours and already say what is expected.
  let message = /^Invalid/.test(issue.message) ? 'has the wrong format' : issue.message;
  let fix = 'see docs/config-reference.md for the expected format';
  if (issue.format === 'email') [message, fix] = ['must be an e-mail address', 'write an address such as ops@example.com'];
  else if (issue.format === 'starts_with') [message, fix] = [`must start with "${prefix}"`, `start it with "${prefix}"`];
  else if (last(issue.path) === 'address') fix = 'write the IPv4 address the other machines reach it on, e.g. `address: 10.0.0.11`';
  else if (last(issue.path) === 'listen') fix = 'write `listen: machine` (the default), `loopback`, `any`, or one IPv4 address such as 10.0.0.5';
  else if (issue.format === 'regex') fix = 'use lower case letters, digits and dashes, starting with a letter, e.g. app1';
  return problem(ctx.loc.at(issue.path), `${named(issue.path)} ${message}${shown(ctx, issue.path)}`, fix);
}

function typeProblem(issue: Issue<'invalid_type'>, ctx: IssueContext): Problem {
  const { path } = issue;
  const where = ctx.loc.at(path);
  const v = valueAt(ctx.data, path);
  const { description } = schemaAt(ctx.root, path);
  if (path.length === 0) {
    const start = ctx.secret ? 'examples/vigil.secrets.example.yaml' : 'examples/pair.yaml or examples/distributed.yaml';
    const kind = v == null ? 'nothing' : Array.isArray(v) ? 'a list' : `a ${typeof v}`;
    return problem(where, `the file must be a map of \`key: value\` lines, found ${kind}`, `start from ${start}`);
  }
  if (v === undefined) {
    const gen = ctx.secret ? '; generate a password with `openssl rand -base64 24`' : '';
    return problem(where, `${named(path)} is required`, `add \`${last(path)}: …\`${description ? ` (${description.replace(/\.$/, '')})` : ''}${gen}`);
  }
  const kind = v === null ? 'an empty value' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a map' : `a ${typeof v}`;
  const found = ctx.secret || v === null || typeof v === 'object' ? kind : JSON.stringify(v);
  const fixes: Record<string, string> = {
    int: 'write a whole number without quotes, e.g. 10',
    number: 'write a number without quotes',
    string: ctx.secret ? 'put the value in quotes so it is read as text' : 'write a text value (in quotes if it looks like a number)',
    object: 'write its keys on the following lines, indented under it',
    record:
      path[0] === 'machines'
        ? 'write one machine per line under it, indented, e.g. `  app1: { address: 10.0.0.11 }`'
        : 'write its entries on the following lines, indented under it',
    array: 'write a list: `[a, b]`, or one `- item` per line',
  };
  const names: Record<string, string> = { int: 'a whole number', object: 'a map', record: 'a map', array: 'a list' };
  const expected = names[issue.expected] ?? `a ${issue.expected}`;
  return problem(where, `${named(path)} must be ${expected}, found ${found}`, fixes[issue.expected] ?? `write ${expected}`);
}

function sizeProblem(issue: Issue<'too_small'> | Issue<'too_big'>, ctx: IssueContext): Problem {
  const small = issue.code === 'too_small';
  const limit = String(issue.code === 'too_small' ? issue.minimum : issue.maximum);
  const bound = small ? 'at least' : 'at most';
  const unit = issue.origin === 'string' ? ' characters long' : issue.origin === 'array' ? ' item(s)' : '';
  const message = `${named(issue.path)} must ${issue.origin === 'array' ? 'list' : 'be'} ${bound} ${limit}${unit}${shown(ctx, issue.path)}`;
  const roles = last(issue.path) === 'roles' ? `, from ${ROLES.join(', ')}` : '';
  const fix =
    issue.origin === 'array'
      ? `list ${bound} ${limit} item(s)${roles}`
      : issue.origin === 'string'
        ? `write ${bound} ${limit} characters`
        : `write ${limit} or ${small ? 'more' : 'less'}`;
  return problem(ctx.loc.at(issue.path), message, fix);
}

/** Problems in file order, so the operator can work down the file. */
export function byLine(problems: Problem[]): Problem[] {
  const line = (p: Problem) => Number(/:(\d+)/.exec(p.where)?.[1] ?? 0);
  return [...problems].sort((a, b) => line(a) - line(b));
}

function validate<T>(schema: z.ZodType<T>, parsed: Parsed, secret: boolean, code: ErrorCode): T {
  const r = schema.safeParse(parsed.data);
  if (r.success) return r.data;
  const ctx: IssueContext = { root: schema, data: parsed.data, loc: parsed.loc, secret };
  throw new VigilError(code, byLine(r.error.issues.flatMap((i) => issueProblems(i, ctx))));
}

// ---------------------------------------------------------------- the cluster file

/** What works but weakens the cluster in a cluster file that parses (cross-checks.ts clusterWarnings), located by line. Pure. */
export function clusterFileWarnings(text: string, source: string): Problem[] {
  return clusterWarnings(parseCluster(text, source), parseYaml(text, source, false).loc);
}

/** Parses and checks a cluster file; throws one VigilError listing every problem. Pure. */
export function parseCluster(text: string, source: string): Cluster {
  const parsed = parseYaml(text, source, false);
  const file: ClusterFile = validate(clusterFileSchema, parsed, false, 'CONFIG_INVALID');
  const cluster = resolveCluster(file, source);
  const problems = checkCluster(cluster, file, parsed.loc);
  if (problems.length > 0) throw new VigilError('CONFIG_INVALID', byLine(problems));
  return cluster;
}

async function readText(path: string, what: string, fix: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : `cannot be read (${code ?? 'unknown error'})`;
    const how = code === 'EACCES' ? `run as the file's owner, or give yourself read access: \`chmod u+r ${path}\`` : fix;
    throw new VigilError('CONFIG_READ', [problem(path, `${what}: ${reason}`, how)], { cause: err });
  }
}

export async function loadCluster(path: string): Promise<Cluster> {
  const fix = `check the path, or start from an example (e.g. \`vigil validate path/to/vigil.yaml\`); examples/ holds pair.yaml and distributed.yaml`;
  return parseCluster(await readText(path, 'cannot read the cluster file', fix), path);
}

// ---------------------------------------------------------------- the secrets file

/** Values copied from examples/vigil.secrets.example.yaml that were never replaced. */
const PLACEHOLDER = /^CHANGE-ME/;

/** Parses and checks a secrets file. Pure; no message ever quotes a value of the file. */
export function parseSecrets(text: string, source: string): Secrets {
  const parsed = parseYaml(text, source, true);
  const cut = cutShort(parsed, text); // reported with the schema's problems: it often explains them
  let secrets: Secrets;
  try {
    secrets = validate(secretsSchema, parsed, true, 'SECRETS_INVALID');
  } catch (err) {
    if (err instanceof VigilError && cut.length > 0) throw new VigilError(err.code, byLine([...cut, ...err.problems]));
    throw err;
  }
  const placeholders = Object.entries(secrets)
    .filter(([, v]) => typeof v === 'string' && PLACEHOLDER.test(v))
    .map(([k]) =>
      problem(
        parsed.loc.at([k]),
        `${k} still holds the placeholder from the example file`,
        `replace it with a real password, e.g. the output of \`openssl rand -base64 24\``,
      ),
    );
  const problems = [...cut, ...placeholders];
  if (problems.length > 0) throw new VigilError('SECRETS_INVALID', byLine(problems));
  return secrets;
}

/**
 * Unquoted values with " #" in them: YAML reads the rest as a comment, and the password would
 * silently be shorter than the one the operator wrote (and than the one the app uses).
 */
function cutShort(parsed: Parsed, text: string): Problem[] {
  const map = parsed.doc.contents;
  if (!isMap(map)) return [];
  return map.items.flatMap((pair) => {
    const v = pair.value;
    if (!isScalar(v) || v.type !== 'PLAIN' || !v.range) return [];
    const end = text.indexOf('\n', v.range[0]);
    if (!/\s#/.test(text.slice(v.range[0], end < 0 ? undefined : end))) return [];
    const key = String((pair.key as { value?: unknown } | null)?.value);
    return [
      problem(
        parsed.loc.at([key]),
        `the value of ${key} contains " #", which YAML reads as the start of a comment: the password would be cut there`,
        `put the whole value in single quotes: ${key}: '…'`,
      ),
    ];
  });
}

/** A path the cluster file names on the admin's machine: absolute, or relative to the cluster file's directory. */
export function besideClusterFile(cluster: Cluster, path: string): string {
  if (isAbsolute(path)) return path;
  const base = cluster.source === '<generated>' ? '.' : dirname(cluster.source);
  return join(base, path);
}

/** Where the secrets file of a cluster is: `secretsFile` relative to the cluster file's directory. */
export function secretsPath(cluster: Cluster): string {
  return besideClusterFile(cluster, cluster.secretsFile);
}

export async function loadSecrets(cluster: Cluster): Promise<Secrets> {
  const path = secretsPath(cluster);
  const keys = Object.keys(secretsSchema.shape).join(', ');
  const create = `create it readable by you only: \`install -m 600 /dev/null ${path}\`, then write the keys ${keys} (see examples/vigil.secrets.example.yaml)`;
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new VigilError(
      'CONFIG_READ',
      [
        problem(
          path,
          missing ? 'the secrets file does not exist' : 'cannot read the secrets file',
          missing ? create : `check the path and permissions of ${path}`,
        ),
      ],
      { cause: err },
    );
  }
  // Checked before reading: a file others can read has already leaked, whatever it holds.
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new VigilError('SECRETS_INVALID', [problem(path, `the secrets file has mode ${octal}: group or others can access it`, `chmod 600 ${path}`)]);
  }
  return parseSecrets(await readText(path, 'cannot read the secrets file', create), path);
}
