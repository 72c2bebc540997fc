/**
 * Service unit files as the lab's service manager reads them: the part of systemd.unit(5) and
 * systemd.service(5) that Vigil's units (src/render/systemd.ts) and `vigil apply` use, parsed the
 * way systemd parses it. Pure: no file system, no processes (the manager and systemctl do those).
 *
 * The file format: INI sections ([Unit], [Service], [Install]), `#` and `;` comment lines, a
 * trailing backslash continues a line, `Key=Value` with blanks around `=` dropped. List settings
 * accumulate over repeated lines and an empty assignment (`ExecStartPre=`) resets them, so a
 * drop-in can replace a setting. Other settings: the last one wins.
 *
 * Command lines (Exec*=): specifiers (`%%`, `%n`, ...) are resolved on the whole line first, then
 * the line is split into words with double and single quotes and C escapes (`\"`, `\\`, `\n`,
 * `\x41`...); a lone `;` separates commands. Prefixes: `-` (a failure is ignored), `+` / `!` /
 * `!!` (run with full privileges: as root, whatever User= says), `:` (no $VARIABLE
 * substitution), `@` (the second word is argv[0]). $VARIABLES are substituted when the command
 * runs (expandArgv): `$NAME` as a word of its own becomes the value split at blanks, `${NAME}`
 * anywhere in a word the value as it is, `$$` a literal `$`.
 */

export type ServiceType = 'simple' | 'exec' | 'notify' | 'oneshot';
export type RestartPolicy = 'no' | 'always' | 'on-success' | 'on-failure' | 'on-abnormal' | 'on-abort';
export type KillMode = 'control-group' | 'mixed' | 'process' | 'none';
/** What systemd does with a RuntimeDirectory= when the unit stops. */
export type RuntimePreserve = 'no' | 'yes' | 'restart';

export interface ExecCommand {
  /** The program: absolute, or a bare name looked up in the fixed search path when it runs. */
  path: string;
  /** argv[0] and the arguments, $VARIABLES not yet substituted (expandArgv does that). */
  argv: string[];
  /** `-`: a non-zero exit is not a failure. */
  ignoreFailure: boolean;
  /** `+`, `!`, `!!`: runs as root, ignoring User= and Group=. */
  privileged: boolean;
  /** `:`: $VARIABLES stay as written. */
  noSubstitution: boolean;
  /** The setting as written (for messages). */
  line: string;
}

/** A directory systemd creates for the unit, below one of its roots. */
export interface ManagedDirs {
  paths: string[];
  mode: number;
}

export type DirKind = 'runtime' | 'state' | 'logs' | 'cache' | 'configuration';
/** The root of each kind of managed directory (systemd.exec(5), "Paths"). */
export const DIR_ROOTS: Record<DirKind, string> = { runtime: '/run', state: '/var/lib', logs: '/var/log', cache: '/var/cache', configuration: '/etc' };
const DIR_KEYS: Record<string, DirKind> = {
  RuntimeDirectory: 'runtime',
  StateDirectory: 'state',
  LogsDirectory: 'logs',
  CacheDirectory: 'cache',
  ConfigurationDirectory: 'configuration',
};

export interface ServiceUnit {
  /** The unit's name, e.g. `vigil-etcd.service`. */
  name: string;
  description: string;
  /** Ordering only (no dependency is pulled in): used for the order units start at boot. */
  after: string[];
  before: string[];
  type: ServiceType;
  remainAfterExit: boolean;
  user?: string;
  group?: string;
  workingDirectory?: string;
  /** Environment= in order (a later assignment of a name wins). */
  environment: [name: string, value: string][];
  /** EnvironmentFile=: read when the unit starts; `optional` for a leading `-`. */
  environmentFiles: { path: string; optional: boolean }[];
  execStartPre: ExecCommand[];
  execStart: ExecCommand[];
  execStartPost: ExecCommand[];
  execReload: ExecCommand[];
  execStop: ExecCommand[];
  execStopPost: ExecCommand[];
  directories: Record<DirKind, ManagedDirs>;
  runtimeDirectoryPreserve: RuntimePreserve;
  restart: RestartPolicy;
  restartMs: number;
  /** Exit statuses Restart= never restarts on (RestartPreventExitStatus=). */
  restartPrevent: ExitStatusSet;
  /** A signal name, e.g. SIGTERM. */
  killSignal: string;
  killMode: KillMode;
  /** Infinity: no timeout. */
  timeoutStartMs: number;
  timeoutStopMs: number;
  /** Exit statuses that count as a clean exit besides 0 and SIGHUP/SIGINT/SIGTERM/SIGPIPE. */
  successExitStatus: ExitStatusSet;
  wantedBy: string[];
  requiredBy: string[];
  alias: string[];
  /** Settings read but not implemented, and settings that could not be parsed (each ignored). */
  notes: string[];
}

export interface ExitStatusSet {
  codes: number[];
  signals: string[];
}

/** A unit file that cannot be used at all (systemd's LoadState=bad-setting). */
export class UnitError extends Error {
  constructor(
    readonly unit: string,
    readonly reason: string,
  ) {
    super(`${unit}: ${reason}`);
    this.name = 'UnitError';
  }
}

/** Systemd's directory search path for programs named without a path (and the services' PATH). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Signal names Linux knows (as node names them), without the SIG prefix. */
const SIGNALS = new Set([
  'HUP', 'INT', 'QUIT', 'ILL', 'TRAP', 'ABRT', 'BUS', 'FPE', 'KILL', 'USR1', 'SEGV', 'USR2', 'PIPE', 'ALRM', 'TERM',
  'STKFLT', 'CHLD', 'CONT', 'STOP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'XCPU', 'XFSZ', 'VTALRM', 'PROF', 'WINCH', 'IO', 'PWR', 'SYS',
]);

/**
 * Settings systemd knows that the lab accepts without a word: descriptions of the unit, and
 * dependencies between units (the lab starts what it is asked to start; only After=/Before=
 * order the boot).
 */
const SILENT: Record<string, Set<string>> = {
  Unit: new Set(['Documentation', 'Wants', 'Requires', 'Requisite', 'BindsTo', 'PartOf', 'Conflicts', 'StartLimitIntervalSec', 'StartLimitBurst', 'DefaultDependencies']),
};

/** Parses a service unit (the main file followed by its drop-ins, in the order systemd reads them). */
export function parseUnit(name: string, text: string): ServiceUnit {
  const u: ServiceUnit = {
    name,
    description: name,
    after: [],
    before: [],
    type: 'simple',
    remainAfterExit: false,
    environment: [],
    environmentFiles: [],
    execStartPre: [],
    execStart: [],
    execStartPost: [],
    execReload: [],
    execStop: [],
    execStopPost: [],
    directories: {
      runtime: { paths: [], mode: 0o755 },
      state: { paths: [], mode: 0o755 },
      logs: { paths: [], mode: 0o755 },
      cache: { paths: [], mode: 0o755 },
      configuration: { paths: [], mode: 0o755 },
    },
    runtimeDirectoryPreserve: 'no',
    restart: 'no',
    restartMs: 100,
    restartPrevent: { codes: [], signals: [] },
    killSignal: 'SIGTERM',
    killMode: 'control-group',
    timeoutStartMs: 90_000,
    timeoutStopMs: 90_000,
    successExitStatus: { codes: [], signals: [] },
    wantedBy: [],
    requiredBy: [],
    alias: [],
    notes: [],
  };
  let typeSet = false;
  for (const { section, key, value, lineNo } of iniEntries(name, text)) {
    const where = `line ${lineNo}: ${key}=${value}`;
    try {
      if (section === undefined) throw new Error('setting outside a section');
      const handled = applySetting(u, section, key, value);
      if (handled === 'type') typeSet = true;
      else if (!handled && !SILENT[section]?.has(key)) u.notes.push(`${where}: [${section}] ${key}= is not implemented by the lab's service manager; ignored`);
    } catch (err) {
      if (err instanceof UnitError) throw err;
      u.notes.push(`${where}: ${(err as Error).message}; ignored`);
    }
  }
  if (!typeSet && u.execStart.length === 0) u.type = 'oneshot'; // as systemd: no ExecStart= means oneshot
  if (u.execStart.length === 0 && u.execStop.length === 0) throw new UnitError(name, 'Service lacks both ExecStart= and ExecStop= setting. Refusing.');
  if (u.execStart.length === 0 && u.type !== 'oneshot') throw new UnitError(name, 'Service has no ExecStart= setting, which is only allowed for Type=oneshot services. Refusing.');
  if (u.execStart.length > 1 && u.type !== 'oneshot') throw new UnitError(name, 'Service has more than one ExecStart= setting, which is only allowed for Type=oneshot services. Refusing.');
  return u;
}

/** The [Install] section only: what enable and disable need, read even when the rest is not supported. */
export type InstallInfo = Pick<ServiceUnit, 'wantedBy' | 'requiredBy' | 'alias'>;
export function parseInstall(name: string, text: string): InstallInfo {
  const out: InstallInfo = { wantedBy: [], requiredBy: [], alias: [] };
  const keys: Record<string, keyof InstallInfo> = { WantedBy: 'wantedBy', RequiredBy: 'requiredBy', Alias: 'alias' };
  for (const { section, key, value } of iniEntries(name, text)) {
    const k = keys[key];
    if (section === 'Install' && k) out[k] = value === '' ? [] : [...out[k], ...value.split(/\s+/)];
  }
  return out;
}

/** The INI lines of a unit file: section, key and value, with continuation lines joined. */
function* iniEntries(name: string, text: string): Generator<{ section: string | undefined; key: string; value: string; lineNo: number }> {
  let section: string | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    // A trailing backslash joins the next line (with a blank); comment lines in between are skipped.
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = `${line.slice(0, -1)} `;
      let next = lines[++i]!.trim();
      while ((next.startsWith('#') || next.startsWith(';')) && i + 1 < lines.length) next = lines[++i]!.trim();
      line += next;
    }
    if (line.startsWith('[')) {
      if (!line.endsWith(']')) throw new UnitError(name, `line ${lineNo}: invalid section header ${line}`);
      section = line.slice(1, -1);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) continue; // systemd: "Missing '=', ignoring line."
    yield { section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), lineNo };
  }
}

/** Applies one setting; returns false when the lab does not implement it. */
function applySetting(u: ServiceUnit, section: string, key: string, value: string): boolean | 'type' {
  const spec = (v: string) => resolveSpecifiers(v, u.name);
  if (section === 'Unit') {
    switch (key) {
      case 'Description':
        u.description = spec(value);
        return true;
      case 'After':
        u.after = value === '' ? [] : [...u.after, ...value.split(/\s+/)];
        return true;
      case 'Before':
        u.before = value === '' ? [] : [...u.before, ...value.split(/\s+/)];
        return true;
    }
    return false;
  }
  if (section === 'Install') {
    const list = value === '' ? undefined : value.split(/\s+/);
    switch (key) {
      case 'WantedBy':
        u.wantedBy = list ? [...u.wantedBy, ...list] : [];
        return true;
      case 'RequiredBy':
        u.requiredBy = list ? [...u.requiredBy, ...list] : [];
        return true;
      case 'Alias':
        u.alias = list ? [...u.alias, ...list] : [];
        return true;
    }
    return false;
  }
  if (section !== 'Service') return false;
  const execKey = EXEC_KEYS[key];
  if (execKey) {
    u[execKey] = value === '' ? [] : [...u[execKey], ...parseExecLine(spec(value))];
    return true;
  }
  const dirKind = DIR_KEYS[key];
  if (dirKind) {
    u.directories[dirKind].paths = value === '' ? [] : [...u.directories[dirKind].paths, ...splitWords(spec(value)).map((p) => checkManagedDir(key, p))];
    return true;
  }
  if (key.endsWith('DirectoryMode') && DIR_KEYS[key.slice(0, -4)]) {
    u.directories[DIR_KEYS[key.slice(0, -4)]!].mode = parseMode(value);
    return true;
  }
  switch (key) {
    case 'Type':
      if (value === 'simple' || value === 'exec' || value === 'notify' || value === 'oneshot') u.type = value;
      else if (value === 'notify-reload') u.type = 'notify';
      else if (value === 'idle') u.type = 'simple';
      else throw new UnitError(u.name, `Type=${value} is not supported by the lab's service manager (simple, exec, notify, oneshot are)`);
      return 'type';
    case 'RemainAfterExit':
      u.remainAfterExit = parseBoolean(value);
      return true;
    case 'User':
      u.user = value === '' ? undefined : spec(value);
      return true;
    case 'Group':
      u.group = value === '' ? undefined : spec(value);
      return true;
    case 'WorkingDirectory':
      u.workingDirectory = value === '' ? undefined : spec(value).replace(/^-/, '');
      return true;
    case 'Environment':
      if (value === '') u.environment = [];
      else for (const word of splitWords(value)) u.environment.push(parseAssignment(spec(word)));
      return true;
    case 'EnvironmentFile':
      if (value === '') u.environmentFiles = [];
      else u.environmentFiles.push({ path: spec(value.replace(/^-/, '')), optional: value.startsWith('-') });
      return true;
    case 'RuntimeDirectoryPreserve':
      u.runtimeDirectoryPreserve = value === 'restart' ? 'restart' : parseBoolean(value) ? 'yes' : 'no';
      return true;
    case 'Restart':
      if (!['no', 'always', 'on-success', 'on-failure', 'on-abnormal', 'on-abort'].includes(value)) throw new Error(`unknown Restart= value (on-watchdog is not supported)`);
      u.restart = value as RestartPolicy;
      return true;
    case 'RestartSec':
      u.restartMs = parseTimespan(value);
      return true;
    case 'RestartPreventExitStatus':
      u.restartPrevent = value === '' ? { codes: [], signals: [] } : mergeStatus(u.restartPrevent, parseExitStatus(value));
      return true;
    case 'SuccessExitStatus':
      u.successExitStatus = value === '' ? { codes: [], signals: [] } : mergeStatus(u.successExitStatus, parseExitStatus(value));
      return true;
    case 'KillSignal':
      u.killSignal = parseSignal(value);
      return true;
    case 'KillMode':
      if (!['control-group', 'mixed', 'process', 'none'].includes(value)) throw new Error('unknown KillMode= value');
      u.killMode = value as KillMode;
      return true;
    case 'TimeoutSec':
      u.timeoutStartMs = u.timeoutStopMs = serviceTimeout(value);
      return true;
    case 'TimeoutStartSec':
      u.timeoutStartMs = serviceTimeout(value);
      return true;
    case 'TimeoutStopSec':
      u.timeoutStopMs = serviceTimeout(value);
      return true;
  }
  return false;
}

const EXEC_KEYS: Record<string, 'execStartPre' | 'execStart' | 'execStartPost' | 'execReload' | 'execStop' | 'execStopPost'> = {
  ExecStartPre: 'execStartPre',
  ExecStart: 'execStart',
  ExecStartPost: 'execStartPost',
  ExecReload: 'execReload',
  ExecStop: 'execStop',
  ExecStopPost: 'execStopPost',
};

/** RuntimeDirectory= and friends take relative paths below their root, without `..`. */
function checkManagedDir(key: string, p: string): string {
  if (p.startsWith('/') || p.split('/').some((c) => c === '..' || c === '.' || c === '')) throw new Error(`${key}= takes relative paths without "." or "..", not ${JSON.stringify(p)}`);
  return p;
}

/** systemd's time spans: `90`, `1s`, `500ms`, `1min 30s`, `infinity` (in ms). */
export function parseTimespan(value: string): number {
  const v = value.trim();
  if (v === 'infinity') return Infinity;
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000; // a plain number is seconds
  const units: Record<string, number> = {
    us: 0.001, usec: 0.001, ms: 1, msec: 1, s: 1000, sec: 1000, second: 1000, seconds: 1000,
    m: 60_000, min: 60_000, minute: 60_000, minutes: 60_000, h: 3_600_000, hr: 3_600_000, hour: 3_600_000, hours: 3_600_000,
    d: 86_400_000, day: 86_400_000, days: 86_400_000, w: 604_800_000, week: 604_800_000, weeks: 604_800_000,
  };
  let total = 0;
  let rest = v;
  if (rest === '') throw new Error('empty time span');
  while (rest !== '') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*/.exec(rest);
    if (!m || m[0] === '' || (m[2] !== '' && units[m[2]!] === undefined)) throw new Error(`invalid time span ${JSON.stringify(value)}`);
    total += Number(m[1]) * (m[2] === '' ? 1000 : units[m[2]!]!);
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** TimeoutStartSec=/TimeoutStopSec=: 0 and infinity both mean no timeout. */
function serviceTimeout(value: string): number {
  const ms = parseTimespan(value);
  return ms === 0 ? Infinity : ms;
}

export function parseBoolean(value: string): boolean {
  const v = value.toLowerCase();
  if (['1', 'yes', 'y', 'true', 't', 'on'].includes(v)) return true;
  if (['0', 'no', 'n', 'false', 'f', 'off'].includes(v)) return false;
  throw new Error(`not a boolean`);
}

function parseMode(value: string): number {
  if (!/^0?[0-7]{3,4}$/.test(value)) throw new Error('not an octal file mode');
  return parseInt(value, 8);
}

/** A signal as `SIGTERM`, `TERM` or its number; returned as node names it (`SIGTERM`). */
export function parseSignal(value: string): string {
  const name = value.toUpperCase().replace(/^SIG/, '');
  if (SIGNALS.has(name)) return `SIG${name}`;
  const byNumber: Record<string, string> = { '1': 'HUP', '2': 'INT', '3': 'QUIT', '6': 'ABRT', '9': 'KILL', '10': 'USR1', '12': 'USR2', '13': 'PIPE', '14': 'ALRM', '15': 'TERM', '17': 'CHLD', '18': 'CONT', '19': 'STOP' };
  if (byNumber[value]) return `SIG${byNumber[value]}`;
  throw new Error(`unknown signal ${JSON.stringify(value)}`);
}

function parseExitStatus(value: string): ExitStatusSet {
  const out: ExitStatusSet = { codes: [], signals: [] };
  for (const w of value.split(/\s+/)) {
    if (/^\d+$/.test(w) && Number(w) <= 255) out.codes.push(Number(w));
    else out.signals.push(parseSignal(w));
  }
  return out;
}

const mergeStatus = (a: ExitStatusSet, b: ExitStatusSet): ExitStatusSet => ({ codes: [...a.codes, ...b.codes], signals: [...a.signals, ...b.signals] });

function parseAssignment(word: string): [string, string] {
  const eq = word.indexOf('=');
  const name = eq > 0 ? word.slice(0, eq) : '';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`invalid environment assignment ${JSON.stringify(word)}`);
  return [name, word.slice(eq + 1)];
}

/**
 * Specifiers (systemd.unit(5)) that do not depend on the running system: `%%`, the unit's name
 * (`%n`, `%N`, `%p`, `%i`, `%I`, `%j`, `%J`) and the roots (`%t`, `%S`, `%C`, `%L`, `%E`, `%T`, `%V`).
 */
export function resolveSpecifiers(value: string, unitName: string): string {
  const base = unitName.replace(/\.[a-z]+$/, '');
  const at = base.indexOf('@');
  const prefix = at >= 0 ? base.slice(0, at) : base;
  const instance = at >= 0 ? base.slice(at + 1) : '';
  const table: Record<string, string> = {
    '%': '%', n: unitName, N: base, p: prefix, P: prefix, i: instance, I: instance, j: prefix.replace(/^.*-/, ''), J: prefix.replace(/^.*-/, ''),
    t: '/run', S: '/var/lib', C: '/var/cache', L: '/var/log', E: '/etc', T: '/tmp', V: '/var/tmp',
  };
  return value.replace(/%(.?)/g, (_, c: string) => {
    const r = table[c];
    if (r === undefined) throw new Error(`specifier %${c} is not supported by the lab's service manager`);
    return r;
  });
}

/**
 * Splits a value into words like systemd's extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE):
 * blanks separate words; double or single quotes group blanks into a word (and may start
 * anywhere in it); C escapes work inside and outside quotes.
 */
export function splitWords(value: string): string[] {
  return splitCommandWords(value).map((w) => w.word);
}

/** Words with whether each was a bare `;` (a command separator) as written. */
function splitCommandWords(value: string): { word: string; separator: boolean }[] {
  const out: { word: string; separator: boolean }[] = [];
  let i = 0;
  const n = value.length;
  while (i < n) {
    while (i < n && /\s/.test(value[i]!)) i++;
    if (i >= n) break;
    // A lone `;` separates commands; `\;` as a word of its own is a literal `;`.
    const isolated = (len: number) => i + len >= n || /\s/.test(value[i + len]!);
    if (value[i] === ';' && isolated(1)) {
      out.push({ word: ';', separator: true });
      i++;
      continue;
    }
    if (value[i] === '\\' && value[i + 1] === ';' && isolated(2)) {
      out.push({ word: ';', separator: false });
      i += 2;
      continue;
    }
    let word = '';
    let quote: '"' | "'" | undefined;
    for (; i < n; i++) {
      const c = value[i]!;
      if (!quote && /\s/.test(c)) break;
      if (c === '\\') {
        const [s, len] = unescapeAt(value, i);
        word += s;
        i += len - 1;
      } else if (quote && c === quote) quote = undefined;
      else if (!quote && (c === '"' || c === "'")) quote = c;
      else word += c;
    }
    if (quote) throw new Error(`unterminated quote in ${JSON.stringify(value)}`);
    out.push({ word, separator: false });
  }
  return out;
}

/** One C escape at value[i] (a backslash): its text and its length in the source. */
function unescapeAt(value: string, i: number): [string, number] {
  const c = value[i + 1];
  if (c === undefined) throw new Error('trailing backslash');
  const simple: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"', "'": "'", s: ' ' };
  if (simple[c] !== undefined) return [simple[c], 2];
  const hex = (len: number) => {
    const h = value.slice(i + 2, i + 2 + len);
    if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(h)) throw new Error(`invalid escape \\${c}${h}`);
    return String.fromCodePoint(parseInt(h, 16));
  };
  if (c === 'x') return [hex(2), 4];
  if (c === 'u') return [hex(4), 6];
  if (c === 'U') return [hex(8), 10];
  const oct = value.slice(i + 1, i + 4);
  if (/^[0-3][0-7]{2}$/.test(oct)) return [String.fromCharCode(parseInt(oct, 8)), 4];
  throw new Error(`invalid escape \\${c}`);
}

/** One Exec*= value (specifiers already resolved) as its commands. */
export function parseExecLine(value: string): ExecCommand[] {
  const words = splitCommandWords(value);
  const out: ExecCommand[] = [];
  let current: string[] = [];
  const flush = () => {
    if (current.length) out.push(execCommand(current, value));
    current = [];
  };
  for (const w of words) {
    if (w.separator) flush();
    else current.push(w.word);
  }
  flush();
  if (out.length === 0) throw new Error('empty command line');
  return out;
}

function execCommand(words: string[], line: string): ExecCommand {
  let first = words[0]!;
  let ignoreFailure = false;
  let privileged = false;
  let noSubstitution = false;
  let separateArgv0 = false;
  for (;;) {
    if (first.startsWith('!!')) {
      privileged = true;
      first = first.slice(2);
      continue;
    }
    const c = first[0];
    if (c === '-') ignoreFailure = true;
    else if (c === '+' || c === '!') privileged = true;
    else if (c === ':') noSubstitution = true;
    else if (c === '@') separateArgv0 = true;
    else break;
    first = first.slice(1);
  }
  if (first === '') throw new Error(`no program in ${JSON.stringify(line)}`);
  const rest = words.slice(1);
  if (separateArgv0 && rest.length === 0) throw new Error(`@ needs argv[0] after the program in ${JSON.stringify(line)}`);
  return { path: first, argv: separateArgv0 ? rest : [first, ...rest], ignoreFailure, privileged, noSubstitution, line };
}

/** Substitutes $VARIABLES in a command's argv when it runs (see the header). */
export function expandArgv(cmd: ExecCommand, env: Record<string, string | undefined>): string[] {
  if (cmd.noSubstitution) return cmd.argv.map((a) => a);
  const out: string[] = [];
  for (const word of cmd.argv) {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (whole) {
      const v = env[whole[1]!];
      if (v !== undefined) out.push(...v.split(/\s+/).filter(Boolean));
      continue;
    }
    out.push(word.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name: string | undefined) => (name === undefined ? '$' : (env[name] ?? ''))));
  }
  return out;
}

/** Whether an exit counts as clean: 0, SIGHUP/SIGINT/SIGTERM/SIGPIPE, or one of SuccessExitStatus=. */
export function cleanExit(u: Pick<ServiceUnit, 'successExitStatus'>, code: number | null, signal: string | null): boolean {
  if (signal) return ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGPIPE'].includes(signal) || u.successExitStatus.signals.includes(signal);
  return code === 0 || u.successExitStatus.codes.includes(code ?? -1);
}

/** Whether Restart= restarts after an exit (systemd.service(5), the table under Restart=). */
export function restartWanted(u: Pick<ServiceUnit, 'restart' | 'successExitStatus' | 'restartPrevent'>, exit: { code: number | null; signal: string | null; timedOut?: boolean }): boolean {
  if (exit.signal ? u.restartPrevent.signals.includes(exit.signal) : u.restartPrevent.codes.includes(exit.code ?? -1)) return false;
  const clean = !exit.timedOut && cleanExit(u, exit.code, exit.signal);
  switch (u.restart) {
    case 'no':
      return false;
    case 'always':
      return true;
    case 'on-success':
      return clean;
    case 'on-failure':
      return !clean;
    case 'on-abnormal':
      return !clean && (exit.timedOut === true || exit.signal !== null);
    case 'on-abort':
      return !clean && !exit.timedOut && exit.signal !== null;
  }
}

/** Whether a name can be a unit's (systemd.unit(5): letters, digits and `:-_.\@`; no path). */
export function validUnitName(name: string): boolean {
  return /^[A-Za-z0-9:_.\\@-]+\.[a-z]+$/.test(name) && !name.startsWith('.') && name.length <= 255;
}

/** The name systemctl means: `ssh` is `ssh.service`. */
export function unitName(arg: string): string {
  return /\.(service|socket|target|timer|path|mount|automount|swap|slice|scope|device)$/.test(arg) ? arg : `${arg}.service`;
}

/**
 * The order units start in when they start together (at boot): every unit after those its
 * After= names (and before those its Before= names), among the given units only; ties and
 * cycles broken by name.
 */
export function bootOrder(units: Pick<ServiceUnit, 'name' | 'after' | 'before'>[]): string[] {
  const names = new Set(units.map((u) => u.name));
  const deps = new Map<string, Set<string>>(units.map((u) => [u.name, new Set(u.after.filter((a) => names.has(a) && a !== u.name))]));
  for (const u of units) for (const b of u.before) if (names.has(b) && b !== u.name) deps.get(b)!.add(u.name);
  const out: string[] = [];
  const left = new Set([...names].sort());
  while (left.size) {
    const ready = [...left].find((n) => [...deps.get(n)!].every((d) => !left.has(d))) ?? [...left][0]!; // a cycle: take the first by name
    out.push(ready);
    left.delete(ready);
  }
  return out;
}
