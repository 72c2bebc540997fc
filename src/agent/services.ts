/**
 * Starting and stopping the application's services on an app machine: systemd units on a real
 * machine, plain processes in the lab (where no systemd runs as PID 1). Both are idempotent:
 * starting what runs and stopping what is stopped change nothing.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ROOTS } from '../config/paths.ts';
import { run, sleep } from '../util/exec.ts';

export interface ServiceState {
  name: string;
  running: boolean;
}

export interface ServiceRunner {
  start(): Promise<void>;
  stop(): Promise<void>;
  states(): Promise<ServiceState[]>;
}

/** systemd: `systemctl start|stop` on the units the cluster file lists, in order (stop in reverse). */
export class SystemdServices implements ServiceRunner {
  constructor(private readonly units: { name: string; unit: string }[]) {}

  async start(): Promise<void> {
    for (const u of this.units) await run('systemctl', ['start', u.unit], { timeoutMs: 60_000 });
  }

  async stop(): Promise<void> {
    for (const u of [...this.units].reverse()) await run('systemctl', ['stop', u.unit], { timeoutMs: 60_000 });
  }

  async states(): Promise<ServiceState[]> {
    return Promise.all(
      this.units.map(async (u) => ({ name: u.name, running: (await run('systemctl', ['is-active', '--quiet', u.unit], { allowFail: true })).code === 0 })),
    );
  }
}

export interface ProcessSpec {
  name: string;
  argv: string[];
}

interface Tracked {
  pid: number;
  /** Start time in clock ticks since boot (/proc/PID/stat field 22): tells our process from a reused PID. */
  startTicks: string;
}

/** Field 22 of /proc/PID/stat, or undefined when the process is gone. */
async function startTicks(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state[0] === 'Z') return undefined; // a zombie no longer runs
    return state[19];
  } catch {
    return undefined;
  }
}

/**
 * The lab's services: processes the agent starts in its own machine's namespaces, each in a
 * process group of its own, so they outlive an agent crash as systemd units would. Their PIDs are
 * kept in a state file, so a restarted agent adopts them instead of starting a second copy.
 */
export class ProcessServices implements ServiceRunner {
  private readonly stateFile: string;

  constructor(
    private readonly specs: ProcessSpec[],
    opts: { stateFile?: string; logDir?: string } = {},
    private readonly logDir = opts.logDir ?? ROOTS.log,
  ) {
    this.stateFile = opts.stateFile ?? join(ROOTS.run, 'agent-services.json');
  }

  async start(): Promise<void> {
    const tracked = await this.load();
    for (const spec of this.specs) {
      if (await this.alive(tracked[spec.name])) continue;
      const log = openSync(join(this.logDir, `${spec.name}.log`), 'a');
      try {
        const child = spawn(spec.argv[0]!, spec.argv.slice(1), { detached: true, stdio: ['ignore', log, log], cwd: '/' });
        child.unref();
        if (child.pid === undefined) throw new Error(`could not start ${spec.name}`);
        tracked[spec.name] = { pid: child.pid, startTicks: (await startTicks(child.pid)) ?? '' };
      } finally {
        closeSync(log);
      }
    }
    await this.save(tracked);
  }

  async stop(): Promise<void> {
    const tracked = await this.load();
    for (const spec of [...this.specs].reverse()) {
      const t = tracked[spec.name];
      if (t && (await this.alive(t))) await stopGroup(t.pid);
      delete tracked[spec.name];
    }
    await this.save(tracked);
  }

  async states(): Promise<ServiceState[]> {
    const tracked = await this.load();
    return Promise.all(this.specs.map(async (s) => ({ name: s.name, running: await this.alive(tracked[s.name]) })));
  }

  private async alive(t: Tracked | undefined): Promise<boolean> {
    return t !== undefined && (await startTicks(t.pid)) === t.startTicks;
  }

  private async load(): Promise<Record<string, Tracked>> {
    try {
      return JSON.parse(await readFile(this.stateFile, 'utf8')) as Record<string, Tracked>;
    } catch {
      return {};
    }
  }

  private async save(t: Record<string, Tracked>): Promise<void> {
    await mkdir(dirname(this.stateFile), { recursive: true });
    await writeFile(`${this.stateFile}.tmp`, JSON.stringify(t));
    await rename(`${this.stateFile}.tmp`, this.stateFile);
  }
}

/**
 * SIGTERM to the process group, SIGKILL after a grace period. SIGKILL also ends a stopped
 * (SIGSTOPped) process, which would never act on SIGTERM: a hung app must not survive fencing.
 */
async function stopGroup(pid: number, graceMs = 2000): Promise<void> {
  const signal = (sig: NodeJS.Signals | 0) => {
    try {
      process.kill(-pid, sig);
      return true;
    } catch {
      return false;
    }
  };
  if (!signal('SIGTERM')) return;
  signal('SIGCONT'); // a paused process handles SIGTERM only once resumed
  const deadline = performance.now() + graceMs;
  while (performance.now() < deadline) {
    if (!signal(0)) return;
    await sleep(50);
  }
  signal('SIGKILL');
}
