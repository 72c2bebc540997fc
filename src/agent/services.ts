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

  async states(): Promise<ServiceState[]> {
    return Promise.all(
      this.units.map(async (u) => ({
        name: u.name,
        running: (await run('systemctl', ['is-active', '--quiet', u.unit], { allowFail: true })).code === 0,
        runsOn: u.runsOn ?? 'active',
      })),
    );
  }
}
