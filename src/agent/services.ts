/**
 * Starting and stopping the application's services on an app machine: the systemd units the
 * cluster file lists. Idempotent: starting what runs and stopping what is stopped change nothing.
 */
import { run } from '../util/exec.ts';

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
