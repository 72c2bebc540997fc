/**
 * The lab's service manager: a stand-in for systemd on a bare lab machine, where no systemd runs
 * as PID 1. One per machine, started in the machine's namespaces; systemctl (systemctl.ts) asks it
 * over its socket (protocol.ts). It does for each unit what systemd does, within what the unit
 * files of Vigil and `vigil apply` use (unit.ts):
 *
 * - boot: loads the units linked in multi-user.target.wants and starts them in After= order;
 * - start: creates RuntimeDirectory= (and State, Logs, Cache, Configuration) with the unit's
 *   owner and mode, runs ExecStartPre= in order (a failure fails the start), spawns ExecStart= as
 *   User=/Group= (setpriv --init-groups) in a session and process group of its own, then
 *   ExecStartPost=; Type=exec and notify are done once the program is running (no sd_notify),
 *   Type=oneshot once its commands have run;
 * - a main process that ends unasked: the rest of its process group is stopped, and Restart=
 *   decides (RestartSec=, no start-rate limit);
 * - stop: ExecStop=, then KillSignal= to the process group (control-group), the main process and
 *   then SIGKILL to the rest (mixed), or the main process only (process), each followed by
 *   SIGCONT so a stopped process acts on it; SIGKILL after TimeoutStopSec=;
 * - reload: ExecReload= with $MAINPID.
 *
 * A process group stands in for the unit's cgroup: what leaves it (setsid, e.g. sshd's sessions)
 * is no longer the unit's. Jobs on one unit run one at a time, in the order they were asked.
 * The manager's own log is /var/log/vigil/lab-init.log; each unit's output goes to
 * /var/log/vigil/<name>.log (files.ts unitLogPath).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, appendFileSync, chmodSync, chownSync, closeSync, constants, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { MANAGER_LOG, LOG_DIR, STATE_DIR, bootUnits, findUnitFile, readUnitText, unitLogPath, unitStamp, type UnitFile } from './files.ts';
import { SOCKET, SOCKET_DISPLAY, type JobAnswer, type JobVerb, type Request, type UnitProps } from './protocol.ts';
import { DEFAULT_PATH, DIR_ROOTS, UnitError, bootOrder, cleanExit, expandArgv, parseUnit, restartWanted, splitWords, type DirKind, type ExecCommand, type ServiceUnit } from './unit.ts';

type ActiveState = UnitProps['activeState'];
interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}
interface Main {
  pid: number;
  child: ChildProcess;
  exited: Promise<Exit>;
  done: boolean;
}

/** One unit as the manager holds it: its configuration as last loaded and its run-time state. */
class Service {
  unit?: ServiceUnit;
  file?: UnitFile;
  loadState: UnitProps['loadState'] = 'not-found';
  loadError?: string;
  stamp = '';
  active: ActiveState = 'inactive';
  sub = 'dead';
  result = 'success';
  main?: Main;
  /** The process group of the last main process: what is left of the unit once it has ended. */
  pgid?: number;
  lastExit?: Exit;
  stateChangeMs = Date.now();
  activeEnterMs?: number;
  nRestarts = 0;
  invocationId?: string;
  restartTimer?: NodeJS.Timeout;
  /** Set while a stop (or the stop half of a restart) runs: the main process's exit is expected. */
  stopping = false;
  /** Counts main processes, so a late exit of an old one is told apart. */
  generation = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(readonly name: string) {}

  /** Runs a job after those already queued for this unit. */
  enqueue<T>(job: () => Promise<T>): Promise<T> {
    const p = this.chain.then(job, job);
    this.chain = p.catch(() => {});
    return p;
  }
}

/** The process environment of a unit's commands. */
interface ExecContext {
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  cwd: string;
}

class StartFailure extends Error {
  constructor(
    readonly result: string,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** systemd's words for why a job failed, by the unit's Result. */
const REASONS: Record<string, string> = {
  'exit-code': 'the control process exited with error code',
  signal: 'a fatal signal was delivered to the control process',
  timeout: 'a timeout was exceeded',
  resources: 'of unavailable resources or another system error',
};

/** The state file the systemctl shim's is-active reads (files.ts STATE_DIR): written whole, then renamed. */
function publishState(unit: string, active: ActiveState): void {
  try {
    mkdirSync(STATE_DIR, { recursive: true });
    const tmp = join(STATE_DIR, `.${unit}.tmp`);
    writeFileSync(tmp, `${active}\n`);
    renameSync(tmp, join(STATE_DIR, unit));
  } catch {
    // /run/vigil is missing: the shim then asks the manager itself
  }
}

export class Manager {
  private readonly services = new Map<string, Service>();
  private bootOrder: string[] = [];

  constructor(private readonly log: (line: string) => void) {}

  /** Starts the enabled units, each after the units its After= names. */
  async boot(): Promise<void> {
    rmSync(STATE_DIR, { recursive: true, force: true }); // a boot: nothing of the last life runs
    const svcs = bootUnits().map((n) => this.resolve(n)).filter((s) => s.unit);
    this.bootOrder = bootOrder(svcs.map((s) => s.unit!));
    this.log(`boot: starting ${this.bootOrder.join(', ') || 'nothing (no unit is enabled)'}`);
    for (const name of this.bootOrder) {
      const a = await this.job('start', name);
      if (a.outcome !== 'done') this.log(`boot: ${name}: ${a.outcome}${a.reason ? ` (${a.reason})` : ''}`);
    }
  }

  /** Stops every unit that runs, the last started first (a shutdown). */
  async shutdown(): Promise<void> {
    const running = [...this.services.values()].filter((s) => s.active !== 'inactive' && s.active !== 'failed').map((s) => s.name);
    const order = [...this.bootOrder.filter((n) => running.includes(n)).reverse(), ...running.filter((n) => !this.bootOrder.includes(n))];
    this.log(`shutdown: stopping ${order.join(', ') || 'nothing'}`);
    await Promise.all(order.map((n) => this.job('stop', n)));
  }

  /** Answers one request from systemctl. */
  async handle(req: Request): Promise<unknown> {
    switch (req.op) {
      case 'job':
        if (req.noBlock) {
          void this.job(req.verb, req.unit);
          return { outcome: 'queued' } satisfies JobAnswer;
        }
        return this.job(req.verb, req.unit);
      case 'show':
        return this.props(this.resolve(req.unit));
      case 'daemon-reload':
        this.daemonReload();
        return { outcome: 'done' };
      case 'reset-failed':
        for (const s of req.unit ? [this.resolve(req.unit)] : this.services.values()) if (s.active === 'failed') this.setState(s, 'inactive', 'dead', 'success');
        return { outcome: 'done' };
      case 'kill': {
        // As systemd: the signal goes to the unit's processes and nothing else happens here; a
        // main process that dies of it is a failure, and Restart= decides.
        const svc = this.resolve(req.unit);
        if (svc.pgid === undefined || !groupAlive(svc.pgid)) return { outcome: 'failed', reason: 'No main PID (the unit is not running)' } satisfies JobAnswer;
        this.note(svc, `Sending signal ${req.signal} to the unit's processes.`);
        signalGroup(svc.pgid, req.signal as NodeJS.Signals, true);
        return { outcome: 'done' } satisfies JobAnswer;
      }
    }
  }

  /** The unit a name means: loaded, or loaded now from its file (as systemd loads units on demand). */
  private resolve(name: string): Service {
    const file = findUnitFile(name);
    const key = file?.name ?? name;
    let svc = this.services.get(key);
    if (!svc) {
      svc = new Service(key);
      this.load(svc, file);
      if (svc.loadState !== 'not-found') this.services.set(key, svc);
    }
    return svc;
  }

  private load(svc: Service, file: UnitFile | undefined): void {
    svc.file = file;
    svc.stamp = unitStamp(file);
    svc.loadError = undefined;
    if (!file) {
      svc.loadState = 'not-found';
      return;
    }
    if (file.masked) {
      svc.loadState = 'masked';
      svc.unit = undefined;
      return;
    }
    try {
      const unit = parseUnit(svc.name, readUnitText(file));
      svc.unit = unit;
      svc.loadState = 'loaded';
      for (const note of unit.notes) this.log(`${svc.name}: ${note}`);
    } catch (err) {
      svc.loadState = 'bad-setting';
      svc.loadError = err instanceof UnitError ? err.reason : (err as Error).message;
      svc.unit = undefined;
      this.log(`${svc.name}: ${svc.loadError}`);
    }
  }

  /** Reads every loaded unit's files again; running units keep running (with their old processes). */
  private daemonReload(): void {
    this.log('daemon-reload');
    for (const [name, svc] of this.services) {
      const file = findUnitFile(name);
      const running = svc.active !== 'inactive' && svc.active !== 'failed';
      if (!file && !running) {
        this.services.delete(name);
        continue;
      }
      if (!file) {
        svc.loadState = 'not-found'; // still running from a file that is gone, as systemd keeps it
        svc.stamp = unitStamp(undefined);
        continue;
      }
      const keep = svc.unit;
      this.load(svc, file);
      if (!svc.unit && running) svc.unit = keep; // a broken file does not orphan running processes
    }
  }

  /** Runs a job on a unit after its queued ones. */
  async job(verb: JobVerb, name: string): Promise<JobAnswer> {
    const svc = this.resolve(name);
    const needsReload = svc.loadState !== 'not-found' && unitStamp(findUnitFile(svc.name)) !== svc.stamp;
    const answer = await svc.enqueue(() => this.runJob(verb, svc));
    return needsReload ? { ...answer, needsReload } : answer;
  }

  private async runJob(verb: JobVerb, svc: Service): Promise<JobAnswer> {
    const isActive = svc.active === 'active' || svc.active === 'reloading';
    if (verb === 'stop') {
      if (svc.loadState === 'not-found' && svc.active === 'inactive') return { outcome: 'not-loaded' };
      return this.stop(svc, false);
    }
    if (svc.loadState !== 'loaded' || !svc.unit) {
      if (verb === 'try-restart' && !isActive) return { outcome: 'done' };
      return { outcome: svc.loadState === 'loaded' ? 'not-found' : (svc.loadState as JobAnswer['outcome']) };
    }
    switch (verb) {
      case 'start':
        return isActive ? { outcome: 'done' } : this.start(svc);
      case 'restart':
        if (svc.active !== 'inactive' && svc.active !== 'failed') await this.stop(svc, true);
        return this.start(svc);
      case 'try-restart':
        if (!isActive) return { outcome: 'done' };
        await this.stop(svc, true);
        return this.start(svc);
      case 'reload':
        return this.reload(svc);
      case 'reload-or-restart':
        if (isActive && svc.unit.execReload.length) return this.reload(svc);
        if (svc.active !== 'inactive' && svc.active !== 'failed') await this.stop(svc, true);
        return this.start(svc);
    }
  }

  /**
   * What the journal would show beside the unit's own output (a failed start, a main process that
   * ended): in the manager's log and, as a `lab-init:` line, in the unit's log that systemctl
   * names.
   */
  private note(svc: Service, line: string): void {
    this.log(`${svc.name}: ${line}`);
    try {
      appendFileSync(unitLogPath(svc.name), `lab-init: ${line}\n`);
    } catch {
      // no log directory: the manager's log has it
    }
  }

  private setState(svc: Service, active: ActiveState, sub: string, result?: string): void {
    if (svc.active !== active) {
      svc.stateChangeMs = Date.now();
      if (active === 'active') svc.activeEnterMs = svc.stateChangeMs;
    }
    svc.active = active;
    svc.sub = sub;
    if (result !== undefined) svc.result = result;
    publishState(svc.name, active);
  }

  // ---- start ----

  private async start(svc: Service): Promise<JobAnswer> {
    if (svc.restartTimer) {
      clearTimeout(svc.restartTimer);
      svc.restartTimer = undefined;
    }
    const u = svc.unit!;
    svc.invocationId = randomBytes(16).toString('hex');
    this.setState(svc, 'activating', 'start-pre', 'success');
    try {
      const ctx = this.context(u, svc.invocationId);
      this.makeDirs(u, ctx);
      for (const cmd of u.execStartPre) await this.control(svc, 'ExecStartPre', cmd, ctx, u.timeoutStartMs);
      this.setState(svc, 'activating', 'start');
      if (u.type === 'oneshot') {
        for (const cmd of u.execStart) await this.control(svc, 'ExecStart', cmd, ctx, u.timeoutStartMs);
        for (const cmd of u.execStartPost) await this.control(svc, 'ExecStartPost', cmd, ctx, u.timeoutStartMs);
        if (u.remainAfterExit) this.setState(svc, 'active', 'exited');
        else {
          this.removeRuntimeDirs(u, false);
          this.setState(svc, 'inactive', 'dead');
        }
        this.log(`${svc.name}: Finished ${u.description}.`);
        return { outcome: 'done' };
      }
      const main = this.spawnMain(svc, u.execStart[0]!, ctx);
      this.setState(svc, 'active', 'running');
      this.log(`${svc.name}: Started ${u.description} (main pid ${main.pid}).`);
      for (const cmd of u.execStartPost) {
        try {
          await this.control(svc, 'ExecStartPost', cmd, { ...ctx, env: { ...ctx.env, MAINPID: String(main.pid) } }, u.timeoutStartMs);
        } catch (err) {
          await this.stop(svc, false);
          throw err;
        }
      }
      return { outcome: 'done' };
    } catch (err) {
      if (!(err instanceof StartFailure)) throw err;
      this.note(svc, err.message);
      this.note(svc, `Failed with result '${err.result}'.`);
      this.afterFailure(svc, err.result, { code: 1, signal: null, timedOut: err.result === 'timeout' });
      return { outcome: 'failed', reason: err.reason };
    }
  }

  /** After a failed start or a main process that ended unasked: restart it, or leave it failed (or dead). */
  private afterFailure(svc: Service, result: string, exit: { code: number | null; signal: string | null; timedOut?: boolean }): void {
    const u = svc.unit!;
    if (restartWanted(u, exit)) {
      this.removeRuntimeDirs(u, true);
      this.setState(svc, 'activating', 'auto-restart', result);
      this.log(`${svc.name}: Scheduled restart job in ${u.restartMs} ms.`);
      svc.restartTimer = setTimeout(() => {
        svc.restartTimer = undefined;
        void svc.enqueue(async () => {
          if (svc.sub !== 'auto-restart' || !svc.unit) return; // stopped or started meanwhile
          svc.nRestarts++;
          await this.start(svc);
        });
      }, u.restartMs);
      return;
    }
    this.removeRuntimeDirs(u, false);
    if (result === 'success') this.setState(svc, 'inactive', 'dead', result);
    else this.setState(svc, 'failed', 'failed', result);
  }

  /** Environment, user and working directory of the unit's commands. */
  private context(u: ServiceUnit, invocationId: string): ExecContext {
    const env: Record<string, string> = { PATH: DEFAULT_PATH, LANG: 'C.UTF-8', INVOCATION_ID: invocationId };
    let uid: number | undefined;
    let gid: number | undefined;
    if (u.user !== undefined) {
      const pw = lookupUser(u.user);
      if (!pw) throw new StartFailure('resources', REASONS.resources!, `Failed to determine user credentials: No such process (User=${u.user} does not exist)`);
      uid = pw.uid;
      gid = pw.gid;
      Object.assign(env, { HOME: pw.home, USER: pw.name, LOGNAME: pw.name, SHELL: pw.shell });
    }
    if (u.group !== undefined) {
      const g = lookupGroup(u.group);
      if (g === undefined) throw new StartFailure('resources', REASONS.resources!, `Failed to determine group credentials: No such process (Group=${u.group} does not exist)`);
      gid = g;
    }
    for (const [k, v] of u.environment) env[k] = v;
    // EnvironmentFile= overrides Environment= (systemd.exec(5)).
    for (const f of u.environmentFiles) {
      let text: string;
      try {
        text = readFileSync(f.path, 'utf8');
      } catch (err) {
        if (f.optional) continue;
        throw new StartFailure('resources', REASONS.resources!, `Failed to load environment files: ${(err as Error).message}`);
      }
      Object.assign(env, parseEnvFile(text));
    }
    const cwd = u.workingDirectory === '~' ? (env.HOME ?? '/root') : (u.workingDirectory ?? '/');
    return { env, uid, gid, cwd };
  }

  /**
   * RuntimeDirectory= and the others, as systemd makes them: the parents root's (0755), the
   * directory itself with the configured mode, owned by User=/Group=; when it exists with another
   * owner, ownership is changed below it too.
   */
  private makeDirs(u: ServiceUnit, ctx: ExecContext): void {
    const uid = ctx.uid ?? 0;
    const gid = ctx.gid ?? 0;
    for (const kind of Object.keys(DIR_ROOTS) as DirKind[]) {
      const { paths, mode } = u.directories[kind];
      for (const p of paths) {
        const dir = join(DIR_ROOTS[kind], p);
        try {
          mkdirSync(join(dir, '..'), { recursive: true, mode: 0o755 });
          mkdirSync(dir, { recursive: true, mode });
          chmodSync(dir, mode);
          const st = statSync(dir);
          if (st.uid !== uid || st.gid !== gid) chownTree(dir, uid, gid);
        } catch (err) {
          throw new StartFailure('resources', REASONS.resources!, `Failed to set up ${kind} directory ${dir}: ${(err as Error).message}`);
        }
        // $RUNTIME_DIRECTORY, $STATE_DIRECTORY...: the full paths, colon-separated.
        const name = `${kind.toUpperCase()}_DIRECTORY`;
        ctx.env[name] = ctx.env[name] ? `${ctx.env[name]}:${dir}` : dir;
      }
    }
  }

  /** Removes RuntimeDirectory= when the unit stops, unless RuntimeDirectoryPreserve= keeps it. */
  private removeRuntimeDirs(u: ServiceUnit, restarting: boolean): void {
    if (u.runtimeDirectoryPreserve === 'yes' || (restarting && u.runtimeDirectoryPreserve === 'restart')) return;
    for (const p of u.directories.runtime.paths) rmSync(join(DIR_ROOTS.runtime, p), { recursive: true, force: true });
  }

  /** Spawns a command of the unit in a session and process group of its own, output to the unit's log. */
  private spawnCommand(svc: Service, what: string, cmd: ExecCommand, ctx: ExecContext): ChildProcess {
    const argv = expandArgv(cmd, ctx.env);
    const program = findProgram(cmd.path);
    if (!program) throw new StartFailure('exit-code', REASONS['exit-code']!, `${what}: Failed to locate executable ${cmd.path}: No such file or directory`);
    try {
      if (!statSync(ctx.cwd).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      throw new StartFailure('exit-code', REASONS['exit-code']!, `${what}: Changing to the requested working directory ${ctx.cwd} failed: ${(err as Error).message}`);
    }
    const asUser = !cmd.privileged && (ctx.uid !== undefined || ctx.gid !== undefined);
    let file = program;
    let args = argv.slice(1);
    if (asUser) {
      const setpriv = findProgram('setpriv');
      if (!setpriv) throw new StartFailure('resources', REASONS.resources!, 'setpriv is missing (util-linux): cannot run as User=/Group=');
      const ids = ctx.uid !== undefined ? [`--reuid=${ctx.uid}`, `--regid=${ctx.gid}`, '--init-groups'] : [`--regid=${ctx.gid}`, '--clear-groups'];
      file = setpriv;
      args = [...ids, '--', program, ...argv.slice(1)];
    }
    mkdirSync(LOG_DIR, { recursive: true });
    const fd = openSync(unitLogPath(svc.name), 'a');
    try {
      const child = spawn(file, args, { argv0: asUser ? undefined : argv[0], detached: true, cwd: ctx.cwd, env: ctx.env, stdio: ['ignore', fd, fd] });
      child.on('error', (err) => this.log(`${svc.name}: ${what}: ${err.message}`));
      if (child.pid === undefined) {
        throw new StartFailure('resources', REASONS.resources!, `${what}: could not start ${program}`);
      }
      return child;
    } finally {
      closeSync(fd);
    }
  }

  private spawnMain(svc: Service, cmd: ExecCommand, ctx: ExecContext): Main {
    const child = this.spawnCommand(svc, 'ExecStart', cmd, ctx);
    const generation = ++svc.generation;
    const main: Main = { pid: child.pid!, child, done: false, exited: new Promise((r) => child.once('exit', (code, signal) => r({ code, signal }))) };
    svc.main = main;
    svc.pgid = main.pid;
    void main.exited.then((exit) => {
      main.done = true;
      if (svc.main === main) svc.main = undefined;
      svc.lastExit = exit;
      this.note(svc, `Main process ${main.pid} exited, ${describeExit(exit)}.`);
      if (svc.stopping) return; // the stop takes it from here
      void svc.enqueue(() => this.mainEnded(svc, generation, main, exit));
    });
    return main;
  }

  /** A main process that ended without a stop: the rest of its group goes, then Restart= decides. */
  private async mainEnded(svc: Service, generation: number, main: Main, exit: Exit): Promise<void> {
    if (generation !== svc.generation || svc.main || !(svc.active === 'active' || svc.active === 'reloading')) return;
    const u = svc.unit!;
    this.setState(svc, 'deactivating', 'final-sigterm');
    const rest = u.killMode === 'control-group' || u.killMode === 'mixed';
    if (rest && groupAlive(main.pid)) {
      signalGroup(main.pid, u.killMode === 'mixed' ? 'SIGKILL' : (u.killSignal as NodeJS.Signals));
      if (!(await waitGone(() => groupAlive(main.pid), u.timeoutStopMs))) signalGroup(main.pid, 'SIGKILL');
    }
    await this.stopPost(svc, u);
    const clean = cleanExit(u, exit.code, exit.signal);
    this.afterFailure(svc, clean ? 'success' : exit.signal ? 'signal' : 'exit-code', exit);
  }

  /** Runs one control command (ExecStartPre=, ExecReload=, ...) to its end; throws StartFailure when it fails. */
  private async control(svc: Service, what: string, cmd: ExecCommand, ctx: ExecContext, timeoutMs: number): Promise<void> {
    const child = this.spawnCommand(svc, what, cmd, ctx);
    const exited = new Promise<Exit>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    let timedOut = false;
    const timer = Number.isFinite(timeoutMs)
      ? setTimeout(() => {
          timedOut = true;
          signalGroup(child.pid!, 'SIGTERM');
          signalGroup(child.pid!, 'SIGCONT');
          setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), 5000).unref();
        }, timeoutMs)
      : undefined;
    const exit = await exited;
    clearTimeout(timer);
    if (timedOut) throw new StartFailure('timeout', REASONS.timeout!, `${what} ${cmd.line}: timed out after ${timeoutMs} ms`);
    if (exit.code === 0 || cmd.ignoreFailure) {
      if (exit.code !== 0) this.log(`${svc.name}: ${what} ${cmd.line}: ${describeExit(exit)} (ignored: leading -)`);
      return;
    }
    const result = exit.signal ? 'signal' : 'exit-code';
    throw new StartFailure(result, REASONS[result]!, `${what} ${cmd.line}: ${describeExit(exit)}`);
  }

  // ---- stop ----

  /** Stops the unit; `restarting` keeps a RuntimeDirectoryPreserve=restart directory. */
  private async stop(svc: Service, restarting: boolean): Promise<JobAnswer> {
    if (svc.restartTimer || svc.sub === 'auto-restart') {
      clearTimeout(svc.restartTimer);
      svc.restartTimer = undefined;
      if (svc.unit) this.removeRuntimeDirs(svc.unit, restarting);
      this.setState(svc, 'inactive', 'dead');
      return { outcome: 'done' };
    }
    if (svc.active === 'inactive' || svc.active === 'failed') return { outcome: 'done' };
    const u = svc.unit!;
    svc.stopping = true;
    let timedOut = false;
    try {
      this.setState(svc, 'deactivating', 'stop');
      const main = svc.main;
      const ctx = this.safeContext(svc, u);
      if (ctx) {
        for (const cmd of u.execStop) {
          try {
            await this.control(svc, 'ExecStop', cmd, { ...ctx, env: { ...ctx.env, ...(main ? { MAINPID: String(main.pid) } : {}) } }, u.timeoutStopMs);
          } catch (err) {
            this.log(`${svc.name}: ${(err as Error).message}`);
          }
        }
      }
      if (!main && svc.pgid !== undefined && (u.killMode === 'control-group' || u.killMode === 'mixed') && groupAlive(svc.pgid)) {
        // The main process is gone already (its end not handled yet): what is left of its group goes.
        signalGroup(svc.pgid, u.killMode === 'mixed' ? 'SIGKILL' : (u.killSignal as NodeJS.Signals), true);
        if (!(await waitGone(() => groupAlive(svc.pgid!), u.timeoutStopMs))) signalGroup(svc.pgid, 'SIGKILL');
      }
      if (main && u.killMode !== 'none') {
        this.setState(svc, 'deactivating', 'stop-sigterm');
        const sig = u.killSignal as NodeJS.Signals;
        if (u.killMode === 'control-group') signalGroup(main.pid, sig, true);
        else signalPid(main.pid, sig, true);
        const deadline = performance.now() + u.timeoutStopMs;
        if (!(await waitGone(() => !main.done, u.timeoutStopMs))) {
          timedOut = true;
          this.log(`${svc.name}: State 'stop-sigterm' timed out. Killing.`);
          this.setState(svc, 'deactivating', 'stop-sigkill');
          if (u.killMode === 'process') signalPid(main.pid, 'SIGKILL');
          else signalGroup(main.pid, 'SIGKILL');
          await waitGone(() => !main.done, 5000);
        }
        if (u.killMode === 'mixed') signalGroup(main.pid, 'SIGKILL');
        else if (u.killMode === 'control-group' && !(await waitGone(() => groupAlive(main.pid), Math.max(0, deadline - performance.now())))) {
          timedOut = true;
          signalGroup(main.pid, 'SIGKILL');
        }
      }
      await this.stopPost(svc, u);
      this.removeRuntimeDirs(u, restarting);
      if (timedOut) this.setState(svc, 'failed', 'failed', 'timeout');
      else this.setState(svc, 'inactive', 'dead', 'success');
      this.log(`${svc.name}: Stopped ${u.description}.`);
      return { outcome: 'done' };
    } finally {
      svc.stopping = false;
      svc.generation++; // an exit still on its way belongs to the stopped process
    }
  }

  private async stopPost(svc: Service, u: ServiceUnit): Promise<void> {
    if (!u.execStopPost.length) return;
    const ctx = this.safeContext(svc, u);
    if (!ctx) return;
    for (const cmd of u.execStopPost) {
      try {
        await this.control(svc, 'ExecStopPost', cmd, ctx, u.timeoutStopMs);
      } catch (err) {
        this.log(`${svc.name}: ${(err as Error).message}`);
      }
    }
  }

  private safeContext(svc: Service, u: ServiceUnit): ExecContext | undefined {
    try {
      return this.context(u, svc.invocationId ?? randomBytes(16).toString('hex'));
    } catch (err) {
      this.log(`${svc.name}: ${(err as Error).message}`);
      return undefined;
    }
  }

  // ---- reload ----

  private async reload(svc: Service): Promise<JobAnswer> {
    const u = svc.unit!;
    if (svc.active !== 'active') return { outcome: 'not-active' };
    if (!u.execReload.length) return { outcome: 'not-applicable' };
    this.setState(svc, 'reloading', 'reload');
    try {
      const ctx = this.context(u, svc.invocationId ?? randomBytes(16).toString('hex'));
      if (svc.main) ctx.env.MAINPID = String(svc.main.pid);
      for (const cmd of u.execReload) await this.control(svc, 'ExecReload', cmd, ctx, u.timeoutStartMs);
      this.log(`${svc.name}: Reloaded ${u.description}.`);
      return { outcome: 'done' };
    } catch (err) {
      if (!(err instanceof StartFailure)) throw err;
      this.note(svc, `reload failed: ${err.message}`);
      return { outcome: 'failed', reason: err.reason };
    } finally {
      // A main process that ended during the reload has moved the unit on already.
      if ((svc.active as ActiveState) === 'reloading') this.setState(svc, 'active', u.type === 'oneshot' ? 'exited' : 'running');
    }
  }

  private props(svc: Service): UnitProps {
    const u = svc.unit;
    const exit = svc.lastExit;
    return {
      name: svc.name,
      description: u?.description ?? svc.name,
      loadState: svc.loadState,
      loadError: svc.loadError,
      activeState: svc.active,
      subState: svc.sub,
      result: svc.result,
      mainPid: svc.main?.pid ?? 0,
      execMainCode: exit ? (exit.signal ? 'killed' : 'exited') : undefined,
      execMainStatus: exit ? (exit.signal ?? exit.code ?? undefined) : undefined,
      fragmentPath: svc.file?.path,
      stateChangeMs: svc.stateChangeMs,
      activeEnterMs: svc.activeEnterMs,
      nRestarts: svc.nRestarts,
      invocationId: svc.invocationId,
      needsReload: svc.loadState !== 'not-found' && unitStamp(findUnitFile(svc.name)) !== svc.stamp,
      type: u?.type,
      restart: u?.restart,
      user: u?.user,
      group: u?.group,
      killMode: u?.killMode,
      killSignal: u?.killSignal,
      timeoutStopMs: u?.timeoutStopMs,
      exec: u && {
        ExecStartPre: u.execStartPre,
        ExecStart: u.execStart,
        ExecStartPost: u.execStartPost,
        ExecReload: u.execReload,
        ExecStop: u.execStop,
        ExecStopPost: u.execStopPost,
      },
      log: unitLogPath(svc.name),
    };
  }
}

// ---- processes ----

function signalPid(pid: number, sig: NodeJS.Signals, cont = false): void {
  try {
    process.kill(pid, sig);
    if (cont && sig !== 'SIGKILL') process.kill(pid, 'SIGCONT'); // a stopped process acts on the signal once continued
  } catch {
    // gone already
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals, cont = false): void {
  signalPid(-pgid, sig, cont);
}

/** Whether a process group still has a live (not zombie) member. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  // kill(0) also succeeds for zombies nobody reaps yet: look at the members themselves.
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === pgid && f[0] !== 'Z') return true;
    } catch {
      // exited while we looked
    }
  }
  return false;
}

/** Waits until `alive()` is false; false when `timeoutMs` passed first. */
async function waitGone(alive: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (alive()) {
    if (performance.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

function describeExit(e: Exit): string {
  return e.signal ? `code=killed, status=${e.signal.replace(/^SIG/, '')}` : `code=exited, status=${e.code}`;
}

/** A program by absolute path, or looked up in systemd's fixed search path. */
function findProgram(path: string): string | undefined {
  const candidates = path.includes('/') ? [path] : DEFAULT_PATH.split(':').map((d) => join(d, path));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      // next
    }
  }
  return undefined;
}

function lookupUser(user: string): { name: string; uid: number; gid: number; home: string; shell: string } | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f.length < 7) continue;
    if (f[0] === user || f[2] === user) return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
  }
  return undefined;
}

function lookupGroup(group: string): number | undefined {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === group) return Number(f[2]);
  }
  return undefined;
}

/** chown -R without following symlinks. */
function chownTree(path: string, uid: number, gid: number): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) {
    lchownSync(path, uid, gid);
    return;
  }
  chownSync(path, uid, gid);
  if (st.isDirectory()) for (const e of readdirSync(path)) chownTree(join(path, e), uid, gid);
}

/** An EnvironmentFile=: KEY=VALUE lines, # and ; comments, quoted values. */
function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    try {
      out[key] = /^["']/.test(value) ? splitWords(value).join(' ') : value;
    } catch {
      out[key] = value;
    }
  }
  return out;
}

// ---- the daemon ----

/** `lab-init.mjs manager`: runs the manager of this machine until it is killed. */
export async function runManager(): Promise<void> {
  process.umask(0o022);
  process.chdir('/');
  mkdirSync(LOG_DIR, { recursive: true });
  const log = (line: string) => {
    try {
      appendFileSync(MANAGER_LOG, `${new Date().toISOString()} ${line}\n`);
    } catch {
      // the log directory went away: nothing to tell it to
    }
  };
  const manager = new Manager(log);
  const server = createServer((conn) => serve(manager, conn, log));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(SOCKET, () => resolve());
  }).catch((err: NodeJS.ErrnoException) => {
    log(`cannot listen on ${SOCKET_DISPLAY}: ${err.code === 'EADDRINUSE' ? 'another manager runs on this machine' : err.message}`);
    process.exit(1);
  });
  process.on('uncaughtException', (err) => log(`internal error: ${err.stack ?? err.message}`));
  process.on('unhandledRejection', (err) => log(`internal error: ${(err as Error)?.stack ?? String(err)}`));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log(`${sig}: shutting down`);
      void manager.shutdown().finally(() => process.exit(0));
    });
  }
  log(`lab-init: started (pid ${process.pid}), listening on ${SOCKET_DISPLAY}`);
  await manager.boot();
  log('boot: done');
}

function serve(manager: Manager, conn: Socket, log: (line: string) => void): void {
  let buf = '';
  conn.setEncoding('utf8');
  conn.on('error', () => {}); // a client that went away
  conn.on('data', (d: string) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    conn.pause();
    let req: Request;
    try {
      req = JSON.parse(buf.slice(0, nl)) as Request;
    } catch {
      conn.end(`${JSON.stringify({ error: 'not a JSON request' })}\n`);
      return;
    }
    manager.handle(req).then(
      (answer) => conn.end(`${JSON.stringify(answer)}\n`),
      (err: Error) => {
        log(`internal error on ${JSON.stringify(req)}: ${err.stack ?? err.message}`);
        conn.end(`${JSON.stringify({ error: err.message })}\n`);
      },
    );
  });
}
