/**
 * Starting and stopping the application's services on an app machine: the systemd units the
 * cluster file lists. Idempotent: starting what runs and stopping what is stopped change nothing.
 */
import { readFile, stat } from 'node:fs/promises';
import { run } from '../util/exec.ts';

/** Where a service runs (cluster file `application.services[].runsOn`): only on the active machine, or warm on every app machine. */
export type Placement = 'active' | 'every';

export interface ServiceState {
  name: string;
  running: boolean;
  /** Absent: `active`. */
  runsOn?: Placement;
  /** A running service with a `healthUrl` (a standby's `every` one, the active machine's `active` one): it answered its own health check this cycle (false: still starting, or failing). Absent: not asked. */
  ready?: boolean;
}

export interface ServiceRunner {
  /** `every`: only the services that run on every app machine (a standby's warm ones); default all. */
  start(scope?: 'all' | 'every'): Promise<void>;
  /** `active`: only the services that run on the active machine alone; default all. */
  stop(scope?: 'all' | 'active'): Promise<void>;
  /** `fresh`: ask systemd now, never an answer kept from before (SystemdServices keeps one while the units' cgroups show no change). */
  states(opts?: { fresh?: boolean }): Promise<ServiceState[]>;
}

/** What SystemdServices asks the machine; replaceable in tests. */
export interface SystemdProbe {
  /** `systemctl is-active U1 U2 ...`'s output: one state a line. */
  isActive(units: string[]): Promise<string>;
  /** Each unit's cgroup as unitCgroup() describes it, or undefined where cgroups v2 is not what the machine runs (nothing is kept then). */
  cgroups(units: string[]): Promise<string[] | undefined>;
  nowMs(): number;
}

/**
 * systemd: `systemctl start|stop` on the units the cluster file lists, in order (stop in reverse).
 * Their states come from one `systemctl is-active` for every unit, which the agent needs twice a
 * second; a child process each time was most of an idle app agent's CPU (docs/benchmarks.md, the
 * daemons' footprint). So the answer is kept while each unit's cgroup (read from /sys/fs/cgroup,
 * no process) shows no change that could go with a change of state: see keptStatesHold.
 */
export class SystemdServices implements ServiceRunner {
  private kept: KeptStates | undefined;

  constructor(
    private readonly units: { name: string; unit: string; runsOn?: Placement }[],
    private readonly probe: SystemdProbe = SYSTEMD,
  ) {}

  async start(scope: 'all' | 'every' = 'all'): Promise<void> {
    this.kept = undefined;
    for (const u of this.units) if (scope === 'all' || u.runsOn === 'every') await run('systemctl', ['start', u.unit], { timeoutMs: 60_000 });
  }

  async stop(scope: 'all' | 'active' = 'all'): Promise<void> {
    this.kept = undefined;
    for (const u of [...this.units].reverse())
      if (scope === 'all' || (u.runsOn ?? 'active') === 'active') await run('systemctl', ['stop', u.unit], { timeoutMs: 60_000 });
  }

  async states(opts: { fresh?: boolean } = {}): Promise<ServiceState[]> {
    const names = this.units.map((u) => u.unit);
    const cgroups = await this.probe.cgroups(names).catch(() => undefined);
    const kept = this.kept;
    if (!opts.fresh && kept && cgroups && keptStatesHold(kept, cgroups, this.probe.nowMs())) return activeStates(this.units, kept.lines.join('\n'));
    const atMs = this.probe.nowMs();
    const stdout = await this.probe.isActive(names);
    // The cgroups read before systemctl answered: a change after that read shows at the next look.
    this.kept = cgroups ? { lines: stdout.split('\n').slice(0, names.length), cgroups, atMs } : undefined;
    return activeStates(this.units, stdout);
  }
}

/** systemctl's last answer, the units' cgroups as read just before it, and when. */
export interface KeptStates {
  lines: string[];
  cgroups: string[];
  atMs: number;
}

/** systemctl is asked again at least this often, whatever the cgroups show. */
export const KEPT_STATES_MAX_AGE_MS = 10_000;

/**
 * Whether systemctl's kept answer still stands, from the units' cgroups read now: only when every
 * unit's cgroup is the one it was (same directory: a unit that stopped and started again has a new
 * one) with the same population, each unit's state was a settled one that agrees with its cgroup
 * (active with processes; inactive or failed with none), and the answer is younger than
 * KEPT_STATES_MAX_AGE_MS. A unit that dies empties its cgroup, one that starts fills one, so
 * either makes the agent ask systemd; a state in between (activating, deactivating, reloading)
 * is asked about on every look, as is a unit whose cgroup is not where unitCgroup() looks (its
 * processes never show there, so its cgroup never agrees with "active").
 */
export function keptStatesHold(kept: KeptStates, cgroups: readonly string[], nowMs: number): boolean {
  if (nowMs - kept.atMs >= KEPT_STATES_MAX_AGE_MS || cgroups.length !== kept.cgroups.length) return false;
  return cgroups.every((c, i) => {
    if (c !== kept.cgroups[i]) return false;
    const populated = c.endsWith(' populated');
    const state = kept.lines[i]?.trim();
    return state === 'active' ? populated : (state === 'inactive' || state === 'failed') && !populated;
  });
}

/** Where systemd puts a system unit's processes under cgroups v2 (a unit with its own Slice= is elsewhere: never kept, see keptStatesHold). */
const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * A unit's cgroup as one word: `<inode> populated` or `<inode> empty` (cgroup.events), or `none`
 * when it has no cgroup (a stopped unit).
 */
async function unitCgroup(unit: string): Promise<string> {
  const dir = `${CGROUP_ROOT}/system.slice/${unit}`;
  try {
    const [st, events] = await Promise.all([stat(dir), readFile(`${dir}/cgroup.events`, 'utf8')]);
    return `${st.ino} ${/^populated 1$/m.test(events) ? 'populated' : 'empty'}`;
  } catch {
    return 'none';
  }
}

let cgroupV2: Promise<boolean> | undefined;

const SYSTEMD: SystemdProbe = {
  isActive: async (units) => (await run('systemctl', ['is-active', ...units], { allowFail: true })).stdout,
  cgroups: async (units) => {
    cgroupV2 ??= stat(`${CGROUP_ROOT}/cgroup.controllers`).then(
      () => true,
      () => false,
    );
    return (await cgroupV2) ? Promise.all(units.map(unitCgroup)) : undefined;
  },
  nowMs: () => performance.now(),
};

/**
 * The units' states from `systemctl is-active U1 U2 ...`, which prints one state a line in the
 * order asked (its exit status only says whether any is active). Running is what `systemctl
 * is-active --quiet U` counts as success: active, reloading, refreshing. A missing line (systemctl
 * failed) counts as not running.
 */
export function activeStates(units: readonly { name: string; runsOn?: Placement }[], stdout: string): ServiceState[] {
  const lines = stdout.split('\n');
  return units.map((u, i) => ({ name: u.name, running: RUNNING.has(lines[i]?.trim() ?? ''), runsOn: u.runsOn ?? 'active' }));
}

const RUNNING = new Set(['active', 'reloading', 'refreshing']);
