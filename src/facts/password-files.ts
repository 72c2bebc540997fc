/**
 * Reading the database password out of an application config file (`application.passwordFiles`
 * in the cluster file) and comparing it with the secrets file. The value never leaves this
 * module: callers get "same", "differs", a missing key or a parse problem with its line.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { VigilError } from '../util/errors.ts';
import { parseProperties } from '../util/properties.ts';
import type { PasswordFileFact, PasswordStatus } from './probe.ts';

export type PasswordFormat = 'properties' | 'env' | 'shell';

export type Found = { value: string; line: number } | { missing: true } | { problem: string; line?: number };

/** Unquotes a shell word: '...' literally, "..." with \\ \" \$ \` escapes, bare words with \x. */
function shellWord(raw: string): string | null {
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const c = raw[i]!;
    if (c === "'") {
      const end = raw.indexOf("'", i + 1);
      if (end < 0) return null;
      out += raw.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= raw.length) return null;
        const d = raw[i]!;
        if (d === '"') break;
        if (d === '\\' && '\\"$`'.includes(raw[i + 1] ?? '')) {
          out += raw[i + 1];
          i += 2;
        } else {
          out += d;
          i++;
        }
      }
      i++;
    } else if (c === '\\') {
      out += raw[i + 1] ?? '';
      i += 2;
    } else if (/\s/.test(c) || c === '#') {
      break; // end of the word; a comment or another word follows
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** `KEY=value` (env) or `[export] KEY=value` (shell) lines; the last assignment wins, as a shell would. */
function assignmentValue(text: string, key: string, allowExport: boolean): Found {
  let found: Found = { missing: true };
  const lines = text.split(/\r?\n/);
  const re = new RegExp(`^\\s*${allowExport ? '(?:export\\s+)?' : ''}${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}=(.*)$`);
  for (const [i, line] of lines.entries()) {
    const m = re.exec(line);
    if (!m) continue;
    const value = shellWord(m[1]!.trimEnd());
    found = value === null ? { problem: 'unterminated quote', line: i + 1 } : { value, line: i + 1 };
  }
  return found;
}

/** The value of `key` in a properties, env or shell file (also read by app-settings.ts). */
export function findValue(text: string, format: PasswordFormat, key: string, path: string): Found {
  if (format === 'properties') {
    try {
      const e = parseProperties(text, path).get(key);
      return e ? { value: e.value, line: e.line } : { missing: true };
    } catch (err) {
      // parseProperties names file, line and key, never a value.
      const first = err instanceof VigilError ? err.problems[0] : undefined;
      return { problem: first ? `${first.where}: ${first.message}` : 'the file cannot be parsed' };
    }
  }
  return assignmentValue(text, key, format === 'shell');
}

/** Equal without telling by its timing how much of it matched. */
function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

/** Compares one file's password with the secrets file; `content` null when the file is missing. */
export function comparePasswordFile(file: { path: string; format: PasswordFormat; key: string }, content: string | null, expected: string): PasswordFileFact {
  const base = { path: file.path, key: file.key };
  if (content === null) return { ...base, status: 'missing-file' };
  const found = findValue(content, file.format, file.key, file.path);
  let status: PasswordStatus;
  if ('missing' in found) status = 'missing-key';
  else if ('problem' in found) return { ...base, status: 'unparseable', detail: found.problem, ...(found.line ? { line: found.line } : {}) };
  else status = sameSecret(found.value, expected) ? 'same' : 'differs';
  return { ...base, status, ...('line' in found && typeof found.line === 'number' ? { line: found.line } : {}) };
}
