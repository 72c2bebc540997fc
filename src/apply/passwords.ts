/**
 * Setting the database password in an application config file (`application.passwordFiles`):
 * the seed's five hand edits on the slave. Only the key's own line changes; comments, order and
 * every other line stay as they were. The result is read back with doctor's reader
 * (src/facts/password-files.ts), so apply and doctor agree on what the file says. Pure: the
 * caller reads and writes the file, and no message here quotes a value.
 */
import { comparePasswordFile, type PasswordFormat } from '../facts/password-files.ts';
import { formatProperties, parseProperties } from '../util/properties.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface PasswordFile {
  path: string;
  format: PasswordFormat;
  key: string;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A shell word that reads back as `value`: bare when it is plain, else single-quoted. */
function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

const oddBackslashes = (line: string) => (/\\*$/.exec(line)?.[0].length ?? 0) % 2 === 1;

/** The file's text with `file.key` set to `value`; `changed` false when it already held it. */
export function withPassword(file: PasswordFile, text: string, value: string): { text: string; changed: boolean } {
  if (/[\r\n\0]/.test(value))
    throw new VigilError('CONFIG_INVALID', [
      problem(`appDbPassword`, 'the password holds a line break or NUL, which no config file line can carry', 'choose a password without control characters'),
    ]);
  const before = comparePasswordFile(file, text, value);
  if (before.status === 'same') return { text, changed: false };
  if (before.status === 'unparseable')
    throw new VigilError('CONFIG_INVALID', [
      problem(
        `${file.path}${before.line ? `:${before.line}` : ''}`,
        `cannot be read as a ${file.format} file (${before.detail ?? 'parse error'})`,
        'fix that line by hand, then run `vigil apply` again',
      ),
    ]);
  const lines = text.split('\n');
  const newline = file.format === 'properties' ? formatProperties({ [file.key]: value }).trimEnd() : `${file.key}=${shellQuote(value)}`;
  let at: { start: number; end: number; prefix: string } | undefined;
  if (file.format === 'properties') {
    const entry = parseProperties(text, file.path).get(file.key);
    if (entry) {
      let end = entry.line - 1;
      while (oddBackslashes(lines[end] ?? '') && end + 1 < lines.length) end++;
      at = { start: entry.line - 1, end, prefix: '' };
    }
  } else {
    const re = new RegExp(`^(\\s*${file.format === 'shell' ? '(?:export\\s+)?' : ''})${escapeRe(file.key)}=`);
    for (const [i, line] of lines.entries()) {
      const m = re.exec(line);
      if (m) at = { start: i, end: i, prefix: m[1]! }; // the last assignment is the one that counts
    }
  }
  if (at) lines.splice(at.start, at.end - at.start + 1, `${at.prefix}${newline}`);
  else {
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    lines.push(newline, '');
  }
  const out = lines.join('\n');
  const after = comparePasswordFile(file, out, value);
  if (after.status !== 'same') throw new Error(`internal: ${file.path} does not read back the password after the edit (${after.status})`);
  return { text: out, changed: true };
}
