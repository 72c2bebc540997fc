/**
 * The reference application's command line: `--config FILE`, then it serves in the foreground
 * until SIGTERM or SIGINT. Two programs carry it: its own bundle on the app machines
 * (/opt/vigil/lib/vigil-refapp.mjs, src/refapp/entry.ts), which its systemd unit runs, and a
 * checkout's `vigil refapp` (bin/vigil.js), hidden from the help. The artifact's `vigil` has no
 * `refapp` command: its bundle carries no module of the application.
 */
import { stat } from 'node:fs/promises';
import { Command } from 'commander';
import { PATHS } from '../layout/paths.ts';
import { stdoutLogger, type Logger } from './http.ts';
import { loadRefappConfig } from './properties.ts';
import { startRefapp, type RefappOptions } from './server.ts';

const DESCRIPTION = 'run the reference ticket application (lab stand-in for ServiceOps)';

/** The command, named `name`: `refapp` under `vigil`, `vigil-refapp` as a program of its own. */
export function refappCommand(name: string): Command {
  return new Command(name)
    .description(DESCRIPTION)
    .option('--config <file>', 'application properties file', PATHS.refappConfig)
    .action(async (opts: { config: string }) => {
      const stopper = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        stdoutLogger({ event: 'signal', signal });
        stopper.abort();
      };
      const reloads = new EventTarget();
      const onHup = () => {
        stdoutLogger({ event: 'signal', signal: 'SIGHUP' });
        reloads.dispatchEvent(new Event('reload'));
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      process.on('SIGHUP', onHup);
      try {
        await runRefapp(opts.config, { signal: stopper.signal, reloads });
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        process.off('SIGHUP', onHup);
      }
    });
}

/** `vigil refapp --config FILE` in a checkout. */
export function registerRefapp(program: Command): void {
  program.addCommand(refappCommand('refapp').copyInheritedSettings(program), { hidden: true });
}

/** Loads the config, serves until `signal` aborts, then shuts down gracefully. */
export async function runRefapp(configFile: string, opts: RefappOptions & { signal: AbortSignal; reloads?: EventTarget }): Promise<void> {
  const log: Logger = opts.log ?? stdoutLogger;
  const config = await loadRefappConfig(configFile);
  await warnIfReadableByOthers(configFile, log);
  const app = await startRefapp(config, { ...opts, log });
  // SIGHUP: the HTTPS settings again (HTTP keeps serving throughout).
  const reload = () => void app.reloadHttps();
  opts.reloads?.addEventListener('reload', reload);
  if (!opts.signal.aborted) {
    await new Promise<void>((resolve) => opts.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  opts.reloads?.removeEventListener('reload', reload);
  await app.close();
}

/** The file holds the database password; say so (without the password) when others can read it. */
async function warnIfReadableByOthers(file: string, log: Logger): Promise<void> {
  const { mode } = await stat(file);
  if ((mode & 0o004) !== 0) {
    log({ event: 'config-warning', file, warning: 'readable by every user but holds the database password', fix: `chmod o-rwx ${file}` });
  }
}
