/**
 * Java properties files (java.util.Properties rules: `#`/`!` comments, `=`, `:` or whitespace
 * between key and value, backslash escapes, line continuations), the format ServiceOps-style
 * applications keep their database password in. Two deliberate differences from Java: a key
 * given twice and a key with no separator and no value are errors, since both are typical
 * hand-edit mistakes. Errors name the file, line and key, never a value.
 */
import { VigilError, problem, type Problem } from './errors.ts';

export interface PropertyEntry {
  value: string;
  /** 1-based line where the entry starts. */
  line: number;
}

export type Properties = Map<string, PropertyEntry>;

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
