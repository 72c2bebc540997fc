/** `vigil agent` and `vigil observer`: the daemons, run by systemd (on real machines and the lab's). */
import type { Command } from 'commander';
import { PATHS } from '../layout/paths.ts';

export function registerDaemons(program: Command): void {
  program
    .command('agent')
    .description('the node agent of an app or db machine (runs as a service)')
    .requiredOption('--node <name>', "this machine's name in the cluster file")
    .option('--cluster <file>', 'cluster file', PATHS.clusterFile)
    .action(async (o: { node: string; cluster: string }) => {
      const { runAgent } = await import('../agent/daemon.ts');
      await runAgent({ clusterFile: o.cluster, node: o.node, signal: untilSignalled() });
      exitSoon();
    });

  program
    .command('observer')
    .description('the observer: watches the app machines and fails over (runs as a service on observer machines)')
    .requiredOption('--node <name>', "this machine's name in the cluster file")
    .option('--cluster <file>', 'cluster file', PATHS.clusterFile)
    .action(async (o: { node: string; cluster: string }) => {
      const { runObserver } = await import('../observer/daemon.ts');
      await runObserver({ clusterFile: o.cluster, node: o.node, signal: untilSignalled() });
    });
}

/**
 * After the agent stopped: the process ends by itself once nothing is left to do. Should a step
 * of the shutdown that was given up on (see stopSteps) still hold a handle, it is ended anyway,
 * well before systemd's SIGKILL (TimeoutStopSec=10); the timer itself keeps nothing alive.
 */
function exitSoon(ms = 1000): void {
  setTimeout(() => {
    const line = { ts: new Date().toISOString(), event: 'agent-exit-forced', resources: process.getActiveResourcesInfo() };
    process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit());
  }, ms).unref();
}

/** Aborts on SIGTERM or SIGINT, so the daemon can close its connections and exit 0. */
export function untilSignalled(): AbortSignal {
  const ac = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => ac.abort());
  return ac.signal;
}
