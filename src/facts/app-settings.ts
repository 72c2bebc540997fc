/**
 * Where an application configures the certificate and key of its own HTTPS endpoint
 * (`application.tlsEndpoints` in the cluster file): a JSON settings file such as .NET's
 * appsettings.json (nested keys by a dotted path), or a properties or env file. Pure: parsing, key
 * lookup (a key disabled by a leading underscore, the seed's `_CertificateFilePath`, or commented
 * out), and whether a path suits this OS. Shared by `vigil doctor` and the reference application,
 * so both read the file alike. Certificate and key paths are not secrets; no value of any other
 * key is ever returned.
 */
import { findValue } from './password-files.ts';
import type { Probe } from './probe.ts';

export type SettingsFormat = 'json' | 'properties' | 'env';

/** One key looked up in a settings file. */
export type KeyLookup =
  | { status: 'found'; value: string; line?: number }
  | { status: 'missing' }
  /** Present but switched off: `written` is the key as the file has it (e.g. `_CertificateFilePath`). */
  | { status: 'disabled'; how: 'underscore' | 'comment'; written: string; line?: number }
  /** Not a string (JSON), or a line that cannot be read (`detail`, properties and env files). */
  | { status: 'not-a-string'; line?: number; detail?: string };

export type ParsedSettings = { format: 'json'; text: string; doc: unknown } | { format: 'properties' | 'env'; text: string; path: string };

export type SettingsParse = { ok: true; settings: ParsedSettings } | { ok: false; problem: string; line?: number };

/** 1-based line of a character offset. */
const lineAt = (text: string, offset: number): number => text.slice(0, offset).split('\n').length;

/**
 * JSON as .NET's configuration reads appsettings.json: `//` and `/* *\/` comments and trailing
 * commas allowed. Replaced by spaces, so offsets and lines stay those of the file.
 */
export function stripJsonComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? text.length : end;
      out += ' '.repeat(stop - i);
      i = stop;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else {
      out += c;
      i++;
    }
  }
  return trailingCommasOut(out);
}

/** A comma followed only by blanks before } or ] becomes a blank (strings left alone). */
function trailingCommasOut(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === ',' && /^\s*[}\]]/.test(text.slice(i + 1))) out += ' ';
    else out += c;
  }
  return out;
}

export function parseSettings(text: string, format: SettingsFormat, path: string): SettingsParse {
  if (format !== 'json') {
    // A parse problem of a properties file surfaces at lookup, with its line.
    return { ok: true, settings: { format, text, path } };
  }
  const clean = stripJsonComments(text.replace(/^\uFEFF/, ''));
  try {
    return { ok: true, settings: { format, text, doc: JSON.parse(clean) as unknown } };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const pos = /position (\d+)/.exec(message);
    return { ok: false, problem: message.replace(/^JSON\.parse: /, ''), ...(pos ? { line: lineAt(clean, Number(pos[1])) } : {}) };
  }
}

/** The segments of a key path: `Https.CertificateFilePath`, or .NET's `Kestrel:Certificates:Default:Path`. */
export const keySegments = (key: string): string[] => key.split(/[.:]/).filter((s) => s !== '');

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Where `"name"` is first written as a key at or after `from`: a nested key is looked for after
 * its parent's, so `Https.Path` is not taken for an earlier `Logging.Path`. Good enough to point at.
 */
function keyOffset(text: string, name: string, from: number): number | undefined {
  const re = new RegExp(
    `"${JSON.stringify(name)
      .slice(1, -1)
      .replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\s*:`,
    'g',
  );
  re.lastIndex = from;
  return re.exec(text)?.index;
}

/** A member by name: exactly, else ignoring case (.NET configuration keys are case-insensitive). */
function member(o: Record<string, unknown>, name: string): string | undefined {
  if (Object.hasOwn(o, name)) return name;
  return Object.keys(o).find((k) => k.toLowerCase() === name.toLowerCase());
}

function lookupJson(text: string, doc: unknown, key: string): KeyLookup {
  let at: unknown = doc;
  let from = 0;
  const lineOf = (name: string) => {
    const o = keyOffset(text, name, from);
    return o === undefined ? {} : { line: lineAt(text, o) };
  };
  const segments = keySegments(key);
  for (const [i, seg] of segments.entries()) {
    if (!isObject(at)) return { status: 'missing' };
    const name = member(at, seg);
    if (name === undefined) {
      // `_CertificateFilePath` (or `__Https`): the usual way to switch a key off by hand in JSON.
      const off = Object.keys(at).find((k) => /^_+/.test(k) && k.replace(/^_+/, '').toLowerCase() === seg.toLowerCase());
      if (off === undefined) return { status: 'missing' };
      return { status: 'disabled', how: 'underscore', written: [...segments.slice(0, i), off].join('.'), ...lineOf(off) };
    }
    at = at[name];
    if (i === segments.length - 1) {
      const where = lineOf(name);
      return typeof at === 'string' ? { status: 'found', value: at, ...where } : { status: 'not-a-string', ...where };
    }
    from = keyOffset(text, name, from) ?? from;
  }
  return { status: 'missing' };
}

function lookupAssignments(s: { format: 'properties' | 'env'; text: string; path: string }, key: string): KeyLookup {
  const found = findValue(s.text, s.format, key, s.path);
  if ('value' in found) return { status: 'found', value: found.value, line: found.line };
  if ('problem' in found) return { status: 'not-a-string', detail: found.problem, ...(found.line ? { line: found.line } : {}) };
  const off = findValue(s.text, s.format, `_${key}`, s.path);
  if ('value' in off) return { status: 'disabled', how: 'underscore', written: `_${key}`, line: off.line };
  const esc = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const commented = new RegExp(`^\\s*[#!]\\s*(?:export\\s+)?${esc}\\s*[=:]`);
  const i = s.text.split(/\r?\n/).findIndex((l) => commented.test(l));
  if (i >= 0) return { status: 'disabled', how: 'comment', written: key, line: i + 1 };
  return { status: 'missing' };
}

/** The value at a dotted path of a JSON document, whatever its type (undefined when absent). */
export function jsonValue(doc: unknown, key: string): unknown {
  let at = doc;
  for (const seg of keySegments(key)) {
    if (!isObject(at)) return undefined;
    const name = member(at, seg);
    if (name === undefined) return undefined;
    at = at[name];
  }
  return at;
}

export function lookupKey(settings: ParsedSettings, key: string): KeyLookup {
  return settings.format === 'json' ? lookupJson(settings.text, settings.doc, key) : lookupAssignments(settings, key);
}

/** The last segment of a key path, as a person renames it: `CertificateFilePath`. */
export const lastSegment = (key: string): string => keySegments(key).at(-1) ?? key;

/** What is wrong with a path on this (Linux) machine, or null. */
export type PathProblem = 'empty' | 'windows' | 'backslash' | 'relative';

export function pathProblem(value: string): PathProblem | null {
  if (value.trim() === '') return 'empty';
  if (/^[A-Za-z]:[\\/]/.test(value) || value.startsWith('\\\\')) return 'windows';
  if (value.includes('\\')) return 'backslash';
  if (!value.startsWith('/')) return 'relative';
  return null;
}

/** The file name of a path written with either separator: `C:\certs\app.pem` gives `app.pem`. */
export const fileNameOf = (value: string): string => value.split(/[\\/]/).filter(Boolean).at(-1) ?? value;

/** The credentials a systemd unit runs with, from `systemctl show -p User -p Group -p CapabilityBoundingSet`. */
export interface ServiceCredentials {
  user: string;
  /** Empty: the user's own group. */
  group: string;
  /** Root with CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH: reads any file whatever its mode. */
  bypassesPermissions: boolean;
}

export function parseUnitCredentials(stdout: string): ServiceCredentials {
  const props = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const user = props.get('User') || 'root';
  const caps = (props.get('CapabilityBoundingSet') ?? '').split(/\s+/);
  const root = user === 'root' || user === '0';
  return { user, group: props.get('Group') ?? '', bypassesPermissions: root && (caps.includes('cap_dac_override') || caps.includes('cap_dac_read_search')) };
}

/**
 * The command that answers "may the service read PATH?" with its own permissions: exit 0 when it
 * may. Another user through runuser; root without the capabilities that bypass file modes (a unit
 * that drops them) through setpriv; root with them through plain `test -r`.
 */
export function readableCommand(c: ServiceCredentials, path: string): string[] {
  if (c.user !== 'root' && c.user !== '0') return ['runuser', '-u', c.user, ...(c.group ? ['-g', c.group] : []), '--', 'test', '-r', path];
  if (c.bypassesPermissions) return ['test', '-r', path];
  return ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', '--', 'test', '-r', path];
}

/** One of the two paths an endpoint's settings name, as found on a machine. */
export interface TlsPathFact {
  what: 'certificate' | 'key';
  /** The key the cluster file names for it. */
  key: string;
  lookup: KeyLookup;
  /** For a found absolute path: whether it exists (as root sees it). */
  exists?: boolean;
  /** Whether the service's user may read it. */
  readable?: Probe<boolean>;
  /** The certificate's PEM (certificate) or the public half derived from the key on the machine (key). */
  pem?: Probe<string | null>;
}

/** One `application.tlsEndpoints` entry as found on one app machine. */
export interface TlsEndpointFact {
  service: string;
  unit: string;
  port: number;
  file: string;
  format: SettingsFormat;
  credentials: Probe<ServiceCredentials>;
  settings: { status: 'ok' } | { status: 'missing-file' } | { status: 'unreadable'; detail: string } | { status: 'unparseable'; detail: string; line?: number };
  /** Whether the service's user may read the settings file itself. */
  settingsReadable?: Probe<boolean>;
  paths: TlsPathFact[];
}
