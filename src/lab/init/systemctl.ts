/**
 * `systemctl` on a bare lab machine: the commands `vigil apply` and the node agent use, with the
 * output and exit statuses of the real one (systemctl(1), "Exit status": 0 ok, 1 failure, 3 unit
 * not active, 4 no such unit for status, 5 unit not loaded for a job). Unit-file commands
 * (enable, disable, mask, unmask, is-enabled) work on the files directly, as the real systemctl
 * does; the others ask the lab's service manager (manager.ts) over its socket.
 */
import { readFileSync, openSync, readSync, closeSync, fstatSync, lstatSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ETC_UNITS, MANAGER_LOG, disableLinks, enableLinks, fileState, findUnitFile, readUnitText, type UnitFile } from './files.ts';
import { ManagerUnreachable, SOCKET_DISPLAY, ask, type JobAnswer, type JobVerb, type UnitProps } from './protocol.ts';
import { parseInstall, parseSignal, unitName, validUnitName, type InstallInfo } from './unit.ts';

/** Commands this systemctl knows, for the message about any other. */
const COMMANDS = [
  'start', 'stop', 'restart', 'reload', 'try-restart', 'reload-or-restart', 'enable', 'disable', 'mask', 'unmask',
  'is-active', 'is-enabled', 'is-failed', 'status', 'show', 'daemon-reload', 'reset-failed', 'kill',
];
/** Options without a value that are accepted and change nothing here. */
const NO_OP_FLAGS = new Set(['--no-pager', '--no-legend', '--no-ask-password', '--full', '-l', '--plain', '--system', '--force', '-f', '--all', '-a', '--no-reload']);

interface Options {
  quiet: boolean;
  now: boolean;
  value: boolean;
  noBlock: boolean;
  noReload: boolean;
  properties: string[];
  lines: number;
  /** `kill`'s --signal (-s). */
  signal: string;
}

class Output {
  out = '';
  err = '';
  line(s: string): void {
    this.out += `${s}\n`;
  }
  error(s: string): void {
    this.err += `${s}\n`;
  }
}

/** Runs `systemctl ARGS`; returns the exit status. */
export async function systemctl(args: string[]): Promise<number> {
  const o = new Output();
  let code: number;
  try {
    code = await main(args, o);
  } catch (err) {
    if (!(err instanceof ManagerUnreachable)) throw err;
    o.error(`Failed to connect to the lab's service manager (vigil lab-init, socket ${SOCKET_DISPLAY}): ${err.message}`);
    o.error('It runs on every bare lab machine; from the lab host `vigil lab revive <machine>` starts it again.');
    code = 1;
  }
  process.stdout.write(o.out);
  process.stderr.write(o.err);
  return code;
}

async function main(args: string[], o: Output): Promise<number> {
  const opts: Options = { quiet: false, now: false, value: false, noBlock: false, noReload: false, properties: [], lines: 10, signal: 'SIGTERM' };
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      words.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') words.push(a);
    else if (a === '-q' || a === '--quiet') opts.quiet = true;
    else if (a === '--now') opts.now = true;
    else if (a === '--value') opts.value = true;
    else if (a === '--no-block') opts.noBlock = true;
    else if (a === '--no-reload') opts.noReload = true;
    else if (NO_OP_FLAGS.has(a)) continue;
    else if (a === '-p' || a === '--property') opts.properties.push(...(args[++i] ?? '').split(','));
    else if (a.startsWith('--property=')) opts.properties.push(...a.slice('--property='.length).split(','));
    else if (a.startsWith('-p') && a.length > 2) opts.properties.push(...a.slice(2).split(','));
    else if (a === '-n' || a === '--lines') opts.lines = Number(args[++i]);
    else if (a.startsWith('--lines=')) opts.lines = Number(a.slice('--lines='.length));
    else if (a === '-s' || a === '--signal') opts.signal = args[++i] ?? '';
    else if (a.startsWith('--signal=')) opts.signal = a.slice('--signal='.length);
    else if (a === '--kill-whom=all' || a === '--kill-who=all') continue; // the default, and all this manager does
    else {
      o.error(`systemctl: unrecognized option '${a}'`);
      return 1;
    }
  }
  const [verb, ...rest] = words;
  const units = rest.map(unitName);
  if (verb === undefined || !COMMANDS.includes(verb)) {
    o.error(`${verb === undefined ? 'systemctl without a command (list-units)' : `Unknown command verb '${verb}'`}: not supported by the lab's service manager (vigil lab-init).`);
    o.error(`Supported: ${COMMANDS.join(', ')}.`);
    return 1;
  }
  const invalid = rest.find((r) => !validUnitName(unitName(r)));
  if (invalid !== undefined) {
    o.error(`Invalid unit name "${invalid}": a unit name has no path, only letters, digits and ":-_.\\@".`);
    return 1;
  }
  const needUnits = !['daemon-reload', 'reset-failed'].includes(verb);
  if (needUnits && units.length === 0) {
    o.error(`Too few arguments: systemctl ${verb} needs a unit.`);
    return 1;
  }
  switch (verb) {
    case 'start':
    case 'stop':
    case 'restart':
    case 'reload':
    case 'try-restart':
    case 'reload-or-restart':
      return jobs(verb, units, opts, o);
    case 'enable':
    case 'disable':
      return enableDisable(verb, units, opts, o);
    case 'mask':
    case 'unmask':
      return maskUnmask(verb, units, opts, o);
    case 'is-active':
    case 'is-failed': {
      const states = await Promise.all(units.map(async (u) => (await show(u)).activeState));
      if (!opts.quiet) for (const s of states) o.line(s);
      const good = verb === 'is-active' ? states.some((s) => s === 'active' || s === 'reloading') : states.some((s) => s === 'failed');
      return good ? 0 : verb === 'is-active' ? 3 : 1;
    }
    case 'is-enabled': {
      let any = false;
      let code = 0;
      for (const u of units) {
        const state = fileState(u, installOf(findUnitFile(u)));
        if (state === undefined) {
          o.error(`Failed to get unit file state for ${u}: No such file or directory`);
          code = 1;
          continue;
        }
        if (!opts.quiet) o.line(state);
        if (state === 'enabled' || state === 'static') any = true;
      }
      return any && code === 0 ? 0 : 1;
    }
    case 'status':
      return status(units, opts, o);
    case 'show':
      return showCommand(units, opts, o);
    case 'daemon-reload':
      await ask({ op: 'daemon-reload' });
      return 0;
    case 'reset-failed':
      for (const u of units.length ? units : [undefined]) await ask({ op: 'reset-failed', unit: u });
      return 0;
    case 'kill': {
      let signal: string;
      try {
        signal = parseSignal(opts.signal);
      } catch {
        o.error(`Failed to parse signal string ${opts.signal}.`);
        return 1;
      }
      let code = 0;
      for (const u of units) {
        const a = await ask<JobAnswer>({ op: 'kill', unit: u, signal });
        if (a.outcome !== 'done') {
          o.error(`Failed to kill unit ${u}: ${a.reason ?? a.outcome}`);
          code = 1;
        }
      }
      return code;
    }
  }
  return 1;
}

const show = (unit: string) => ask<UnitProps>({ op: 'show', unit });

/** start, stop, restart, ... on each unit in turn; the worst exit status wins. */
async function jobs(verb: JobVerb, units: string[], opts: Options, o: Output): Promise<number> {
  let code = 0;
  for (const u of units) code = Math.max(code, await oneJob(verb, u, opts, o));
  return code;
}

async function oneJob(verb: JobVerb, unit: string, opts: Options, o: Output): Promise<number> {
  const a = await ask<JobAnswer>({ op: 'job', verb, unit, noBlock: opts.noBlock });
  if (a.needsReload) o.error(`Warning: The unit file, source configuration file or drop-ins of ${unit} changed on disk. Run 'systemctl daemon-reload' to reload units.`);
  switch (a.outcome) {
    case 'done':
    case 'queued':
      return 0;
    case 'not-found':
      o.error(`Failed to ${verb} ${unit}: Unit ${unit} not found.`);
      return 5;
    case 'not-loaded':
      o.error(`Failed to ${verb} ${unit}: Unit ${unit} not loaded.`);
      return 5;
    case 'masked':
      o.error(`Failed to ${verb} ${unit}: Unit ${unit} is masked.`);
      return 1;
    case 'bad-setting':
      o.error(`Failed to ${verb} ${unit}: Unit ${unit} has a bad unit file setting.`);
      o.error(`See ${MANAGER_LOG} and 'systemctl status ${unit}' for details.`);
      return 1;
    case 'not-active':
      o.error(`${unit} is not active, cannot reload.`);
      return 1;
    case 'not-applicable':
      o.error(`Failed to ${verb} ${unit}: Job type reload is not applicable for unit ${unit}.`);
      return 1;
    case 'failed': {
      const props = await show(unit);
      o.error(`Job for ${unit} failed because ${a.reason ?? 'the control process exited with error code'}.`);
      o.error(`See "systemctl status ${unit}" and ${props.log} (this lab machine's journal) for details.`);
      return 1;
    }
  }
}

/** The [Install] section of a unit file (undefined when it cannot be read). */
function installOf(f: UnitFile | undefined): InstallInfo | undefined {
  if (!f || f.masked) return undefined;
  try {
    return parseInstall(f.name, readUnitText(f));
  } catch {
    return undefined;
  }
}

async function enableDisable(verb: 'enable' | 'disable', units: string[], opts: Options, o: Output): Promise<number> {
  const found: UnitFile[] = [];
  for (const u of units) {
    const f = findUnitFile(u);
    if (!f) {
      o.error(`Failed to ${verb} unit: Unit file ${u} does not exist.`);
      return 1;
    }
    if (f.masked && verb === 'enable') {
      o.error(`Failed to enable unit: Unit file ${join(ETC_UNITS, u)} is masked.`);
      return 1;
    }
    found.push(f);
  }
  for (const f of found) {
    const install = installOf(f);
    if (verb === 'disable') {
      for (const l of disableLinks(f, install)) o.error(l);
      continue;
    }
    if (!install) {
      o.error(`Failed to enable unit: ${f.name} cannot be read (see systemctl status ${f.name}).`);
      return 1;
    }
    if (!install.wantedBy.length && !install.requiredBy.length && !install.alias.length) {
      o.error(`The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\nAlias= settings in the [Install] section, and DefaultInstance= for template\nunits). This means they are not meant to be enabled or disabled using systemctl.`);
      continue;
    }
    for (const l of enableLinks(f, install)) o.error(l);
  }
  if (!opts.noReload) await ask({ op: 'daemon-reload' }).catch(() => {}); // as systemctl: the manager sees the change at once
  if (!opts.now) return 0;
  return jobs(verb === 'enable' ? 'start' : 'stop', found.map((f) => f.name), opts, o);
}

async function maskUnmask(verb: 'mask' | 'unmask', units: string[], opts: Options, o: Output): Promise<number> {
  for (const u of units) {
    const path = join(ETC_UNITS, u);
    let target: string | undefined;
    try {
      target = lstatSync(path).isSymbolicLink() ? readlinkSync(path) : '';
    } catch {
      target = undefined;
    }
    if (verb === 'mask') {
      if (target === '/dev/null') continue;
      if (target !== undefined) {
        o.error(`Failed to mask unit: File ${path} already exists.`);
        return 1;
      }
      symlinkSync('/dev/null', path);
      o.error(`Created symlink ${path} \u2192 /dev/null.`);
    } else if (target === '/dev/null') {
      rmSync(path);
      o.error(`Removed "${path}".`);
    }
  }
  if (!opts.noReload) await ask({ op: 'daemon-reload' }).catch(() => {});
  return 0;
}

/** systemctl status: a few lines per unit and the end of its log. */
async function status(units: string[], opts: Options, o: Output): Promise<number> {
  let code = 0;
  for (const [i, u] of units.entries()) {
    const p = await show(u);
    if (p.loadState === 'not-found' && p.activeState === 'inactive') {
      o.error(`Unit ${u} could not be found.`);
      code = Math.max(code, 4);
      continue;
    }
    if (i > 0) o.line('');
    const bullet = p.activeState === 'failed' ? '\u00d7' : p.activeState === 'active' || p.activeState === 'reloading' ? '\u25cf' : '\u25cb';
    o.line(`${bullet} ${p.name} - ${p.description}`);
    const file = fileState(p.name, installOf(findUnitFile(p.name)));
    const loaded = p.loadState === 'loaded' ? `loaded (${p.fragmentPath}; ${file ?? 'bad'})` : p.loadState === 'bad-setting' ? `bad-setting (Reason: ${p.loadError})` : p.loadState;
    o.line(`     Loaded: ${loaded}`);
    const result = p.activeState === 'failed' ? ` (Result: ${p.result})` : ` (${p.subState})`;
    o.line(`     Active: ${p.activeState}${result} since ${timestamp(p.stateChangeMs)}; ${ago(p.stateChangeMs)}`);
    if (p.mainPid) o.line(`   Main PID: ${p.mainPid} (${comm(p.mainPid)})`);
    else if (p.execMainCode) o.line(`    Process: last main process ${p.execMainCode === 'killed' ? `killed by ${p.execMainStatus}` : `exited with status ${p.execMainStatus}`}`);
    o.line(`        Log: ${p.log}`);
    if (p.needsReload) o.line(`    Warning: The unit file changed on disk. Run 'systemctl daemon-reload' to reload units.`);
    const tail = logTail(p.log, opts.lines);
    if (tail.length) o.line(['', ...tail].join('\n'));
    if (!(p.activeState === 'active' || p.activeState === 'reloading')) code = Math.max(code, 3);
  }
  return code;
}

/** systemctl show [-p NAME...] [--value]. */
async function showCommand(units: string[], opts: Options, o: Output): Promise<number> {
  for (const [i, u] of units.entries()) {
    const p = await show(u);
    const fileStateValue = p.loadState === 'not-found' ? '' : (fileState(p.name, installOf(findUnitFile(p.name))) ?? '');
    const all: [string, string][] = [
      ['Type', p.type ?? ''],
      ['Restart', p.restart ?? ''],
      ['MainPID', String(p.mainPid)],
      ['ExecMainPID', String(p.mainPid)],
      ['ExecMainCode', p.execMainCode === 'killed' ? '2' : p.execMainCode === 'exited' ? '1' : '0'],
      ['ExecMainStatus', p.execMainStatus === undefined ? '0' : typeof p.execMainStatus === 'number' ? String(p.execMainStatus) : signalNumber(p.execMainStatus)],
      ['NRestarts', String(p.nRestarts)],
      ['User', p.user ?? ''],
      ['Group', p.group ?? ''],
      ['KillMode', p.killMode ?? 'control-group'],
      ['KillSignal', signalNumber(p.killSignal ?? 'SIGTERM')],
      ['TimeoutStopUSec', p.timeoutStopMs === undefined ? '1min 30s' : span(p.timeoutStopMs)],
      ['Id', p.name],
      ['Names', p.name],
      ['Description', p.description],
      ['LoadState', p.loadState],
      ['ActiveState', p.activeState],
      ['SubState', p.subState],
      ['Result', p.result],
      ['FragmentPath', p.fragmentPath ?? ''],
      ['UnitFileState', fileStateValue],
      ['StateChangeTimestamp', timestamp(p.stateChangeMs)],
      ['ActiveEnterTimestamp', p.activeEnterMs ? timestamp(p.activeEnterMs) : ''],
      ['InvocationID', p.invocationId ?? ''],
      ['NeedDaemonReload', p.needsReload ? 'yes' : 'no'],
      // One line per command, as systemd prints them (doctor reads ExecStart's argv[]).
      ...Object.entries(p.exec ?? {}).flatMap(([k, cmds]) =>
        cmds.map((c): [string, string] => [k, `{ path=${c.path} ; argv[]=${c.argv.join(' ')} ; ignore_errors=${c.ignoreFailure ? 'yes' : 'no'} ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }`]),
      ),
    ];
    if (i > 0 && !opts.value) o.line('');
    const wanted = opts.properties.filter(Boolean);
    const selected = wanted.length ? wanted.flatMap((w) => all.filter(([k]) => k === w)) : all;
    for (const [k, v] of selected) o.line(opts.value ? v : `${k}=${v}`);
  }
  return 0;
}

function signalNumber(sig: string): string {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGCONT: 18, SIGSTOP: 19 };
  try {
    return String(table[parseSignal(sig)] ?? sig);
  } catch {
    return sig;
  }
}

/** systemd's way of writing a time span: `1min 30s`, `5s`, `infinity`. */
function span(ms: number): string {
  if (!Number.isFinite(ms)) return 'infinity';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [['h', 3_600_000], ['min', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join(' ') || '0';
}

/** `Tue 2025-05-27 10:00:00 UTC`, as systemctl prints timestamps. */
function timestamp(ms: number): string {
  const d = new Date(ms);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  return `${day} ${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 19)} UTC`;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}min ${s % 60}s ago`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}min ago`;
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** The last lines of a log file (reads at most its last 16 KiB). */
function logTail(path: string, lines: number): string[] {
  if (!(lines > 0)) return [];
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8').replace(/\n$/, '').split('\n').slice(-lines);
  } finally {
    closeSync(fd);
  }
}
