/**
 * The reference application's configuration: a Java properties file (the format ServiceOps
 * itself reads), parsed here and turned into a typed `RefappConfig`.
 *
 * Parsing follows java.util.Properties (comments with `#` or `!`, `=`, `:` or whitespace
 * between key and value, backslash escapes and line continuations), so this app and a Spring
 * application reading the same file see the same password. Two deliberate differences: a line
 * with a key but no separator and no value, and a key given twice, are errors instead of being
 * silently accepted, because both are typical hand-edit mistakes.
 *
 * Error messages name the file, line and key, never a value: the file holds the DB password.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { PATHS, REFAPP_PORT } from '../config/paths.ts';
import { VigilError, problem, type Problem } from '../util/errors.ts';

export interface PropertyEntry {
  value: string;
  /** 1-based line where the entry starts. */
  line: number;
}

export type Properties = Map<string, PropertyEntry>;

export interface RefappConfig {
  /** Name of the machine this instance runs on, reported by every answer (`vigil.node`). */
  node: string;
  db: { host: string; port: number; name: string; user: string; password: string };
  /** `port: 0` picks a free port (tests); the properties file must name a real one. */
  http: { host: string; port: number };
  attachmentsDir: string;
}

/** Keys the app reads; the first six have no default. */
export const REFAPP_KEYS = {
  node: 'vigil.node',
  dbHost: 'db.host',
  dbPort: 'db.port',
  dbName: 'db.name',
  dbUser: 'db.user',
  dbPassword: 'spring.datasource.password',
  httpHost: 'http.host',
  httpPort: 'http.port',
  attachmentsDir: 'attachments.dir',
} as const;

const REQUIRED = ['node', 'dbHost', 'dbPort', 'dbName', 'dbUser', 'dbPassword'] as const;

/** Parses properties text; throws a VigilError listing every problem found. */
export function parseProperties(text: string, file: string): Properties {
  const props: Properties = new Map();
  const problems: Problem[] = [];
  for (const { line, content } of logicalLines(text)) {
    const trimmed = content.trimStart();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith('!')) continue;
    const parsed = parseEntry(trimmed, `${file}:${line}`, problems);
    if (!parsed) continue;
    const seen = props.get(parsed.key);
    if (seen) {
      problems.push(problem(`${file}:${line} ${parsed.key}`, `key already set on line ${seen.line}`, 'keep only one of the two lines'));
      continue;
    }
    props.set(parsed.key, { value: parsed.value, line });
  }
  if (problems.length > 0) throw new VigilError('CONFIG_INVALID', problems);
  return props;
}

/** Joins backslash-continued physical lines; reports the line each logical line starts on. */
function* logicalLines(text: string): Generator<{ line: number; content: string }> {
  const physical = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < physical.length; i++) {
    const start = i + 1;
    let content = physical[i] ?? '';
    const isComment = /^\s*[#!]/.test(content);
    // Comment lines never continue (Java agrees); an odd number of trailing backslashes does.
    while (!isComment && endsWithOddBackslashes(content) && i + 1 < physical.length) {
      i++;
      content = content.slice(0, -1) + (physical[i] ?? '').trimStart();
    }
    yield { line: start, content };
  }
}

function endsWithOddBackslashes(s: string): boolean {
  let n = 0;
  for (let i = s.length - 1; i >= 0 && s[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

function parseEntry(s: string, where: string, problems: Problem[]): { key: string; value: string } | null {
  // The key ends at the first unescaped '=', ':' or whitespace.
  let i = 0;
  while (i < s.length && !/[=:\s]/.test(s[i] ?? '')) i += s[i] === '\\' ? 2 : 1;
  const rawKey = s.slice(0, Math.min(i, s.length));
  let rest = s.slice(i).trimStart();
  const hasSeparator = rest.startsWith('=') || rest.startsWith(':');
  if (hasSeparator) rest = rest.slice(1).trimStart();
  const key = unescape(rawKey, where, problems);
  if (key === null) return null;
  if (!hasSeparator && rest === '') {
    problems.push(problem(`${where} ${key}`, 'no value: expected key=value', `write ${key}=<value>, or remove the line`));
    return null;
  }
  const value = unescape(rest, `${where} ${key}`, problems);
  return value === null ? null : { key, value };
}

const SIMPLE_ESCAPES: Record<string, string> = { t: '\t', n: '\n', r: '\r', f: '\f' };

function unescape(s: string, where: string, problems: Problem[]): string | null {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = s[++i] ?? '';
    if (next === 'u') {
      const hex = s.slice(i + 1, i + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
        problems.push(problem(where, 'malformed \\uXXXX escape', 'write four hex digits after \\u, or \\\\ for a backslash'));
        return null;
      }
      out += String.fromCharCode(parseInt(hex, 16));
      i += 4;
    } else {
      out += SIMPLE_ESCAPES[next] ?? next;
    }
  }
  return out;
}

/** Formats entries so that `parseProperties` (and Java) reads back exactly the same values. */
export function formatProperties(entries: Record<string, string>): string {
  return Object.entries(entries)
    .map(([k, v]) => `${escapeText(k, true)}=${escapeText(v, false)}\n`)
    .join('');
}

function escapeText(s: string, isKey: boolean): string {
  let out = '';
  for (const [i, c] of [...s].entries()) {
    if (c === '\\') out += '\\\\';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c === '\f') out += '\\f';
    else if ((isKey && /[=:\s#!]/.test(c)) || (i === 0 && /[\s#!]/.test(c))) out += `\\${c}`;
    else out += c;
  }
  return out;
}

/** Reads and validates the app's properties file. */
export async function loadRefappConfig(file: string = PATHS.refappConfig): Promise<RefappConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new VigilError('CONFIG_READ', [problem(file, `cannot read the file (${reason})`, 'check the path and that this user may read it')], { cause: err });
  }
  return refappConfigFrom(parseProperties(text, file), file);
}

/** Builds the typed config; every missing or invalid key is reported at once, in file order. */
export function refappConfigFrom(props: Properties, file: string): RefappConfig {
  const found: { line: number; problem: Problem }[] = [];
  const report = (k: string, message: string, fix: string) => {
    const line = props.get(k)?.line;
    found.push({ line: line ?? 0, problem: problem(line === undefined ? `${file} ${k}` : `${file}:${line} ${k}`, message, fix) });
  };
  for (const name of REQUIRED) {
    const key = REFAPP_KEYS[name];
    if (!props.has(key)) report(key, 'required key is missing', `add a line ${key}=<value>`);
  }
  // Trailing spaces are kept in the password (Java keeps them) but are a typo anywhere else.
  const text = (k: string, dflt = '') => props.get(k)?.value.trim() ?? dflt;
  const nonEmpty = (k: string) => {
    if (props.has(k) && text(k) === '') report(k, 'must not be empty', `give ${k} a value`);
    return text(k);
  };
  const port = (k: string, dflt: number) => {
    const raw = text(k, String(dflt));
    if (/^\d{1,5}$/.test(raw) && Number(raw) >= 1 && Number(raw) <= 65535) return Number(raw);
    if (props.has(k)) report(k, 'not a port number', `write a number from 1 to 65535, e.g. ${k}=${dflt}`);
    return dflt;
  };
  const password = props.get(REFAPP_KEYS.dbPassword)?.value ?? '';
  if (props.has(REFAPP_KEYS.dbPassword) && password === '') {
    report(REFAPP_KEYS.dbPassword, 'must not be empty', 'set the database password the cluster secrets file holds');
  }
  const attachmentsDir = text(REFAPP_KEYS.attachmentsDir, PATHS.refappAttachments);
  if (!isAbsolute(attachmentsDir)) {
    report(REFAPP_KEYS.attachmentsDir, 'must be an absolute path', `e.g. ${REFAPP_KEYS.attachmentsDir}=${PATHS.refappAttachments}`);
  }
  const config: RefappConfig = {
    node: nonEmpty(REFAPP_KEYS.node),
    db: {
      host: nonEmpty(REFAPP_KEYS.dbHost),
      port: port(REFAPP_KEYS.dbPort, 5000),
      name: nonEmpty(REFAPP_KEYS.dbName),
      user: nonEmpty(REFAPP_KEYS.dbUser),
      password,
    },
    http: { host: nonEmpty(REFAPP_KEYS.httpHost) || '127.0.0.1', port: port(REFAPP_KEYS.httpPort, REFAPP_PORT) },
    attachmentsDir,
  };
  if (found.length > 0) {
    // Missing keys (line 0) first, then the rest in the order the file has them.
    throw new VigilError('CONFIG_INVALID', found.sort((a, b) => a.line - b.line).map((f) => f.problem));
  }
  return config;
}
