/**
 * Starting and stopping the application's services on an app machine: the systemd units the
 * cluster file lists. Idempotent: starting what runs and stopping what is stopped change nothing.
 */
import { run } from '../util/exec.ts';

/** Where a service runs (cluster file `application.services[].runsOn`): only on the active machine, or warm on every app machine. */
export type Placement = 'active' | 'every';

export interface ServiceState {
  name: string;
  running: boolean;
  /** Absent: `active`. */
  runsOn?: Placement;
}

export interface ServiceRunner {
  /** `every`: only the services that run on every app machine (a standby's warm ones); default all. */
  start(scope?: 'all' | 'every'): Promise<void>;
  /** `active`: only the services that run on the active machine alone; default all. */
  stop(scope?: 'all' | 'active'): Promise<void>;
  states(): Promise<ServiceState[]>;
}

/** systemd: `systemctl start|stop` on the units the cluster file lists, in order (stop in reverse). */
export class SystemdServices implements ServiceRunner {
  constructor(private readonly units: { name: string; unit: string; runsOn?: Placement }[]) {}

  async start(scope: 'all' | 'every' = 'all'): Promise<void> {
    for (const u of this.units) if (scope === 'all' || u.runsOn === 'every') await run('systemctl', ['start', u.unit], { timeoutMs: 60_000 });
  }

  async stop(scope: 'all' | 'active' = 'all'): Promise<void> {
    for (const u of [...this.units].reverse())
      if (scope === 'all' || (u.runsOn ?? 'active') === 'active') await run('systemctl', ['stop', u.unit], { timeoutMs: 60_000 });
  }

  /**
   * One `systemctl is-active` for every unit, not one each: the agent asks twice a second, and a
   * child process is most of an idle agent's CPU (docs/benchmarks.md, the daemons' footprint).
   */
  async states(): Promise<ServiceState[]> {
    const r = await run('systemctl', ['is-active', ...this.units.map((u) => u.unit)], { allowFail: true });
    return activeStates(this.units, r.stdout);
  }
}

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
