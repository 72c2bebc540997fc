/**
 * `vigil refapp --config FILE`: runs the reference application (the lab's stand-in for
 * ServiceOps) in the foreground until SIGTERM or SIGINT. Hidden from the help: operators never
 * run it by hand, the lab's systemd unit does.
 */
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { PATHS } from '../layout/paths.ts';
import { stdoutLogger, type Logger } from '../refapp/http.ts';
import { loadRefappConfig } from '../refapp/properties.ts';
import { startRefapp, type RefappOptions } from '../refapp/server.ts';

export function registerRefapp(program: Command): void {
  program
    .command('refapp', { hidden: true })
    .description('run the reference ticket application (lab stand-in for ServiceOps)')
    .option('--config <file>', 'application properties file', PATHS.refappConfig)
    .action(async (opts: { config: string }) => {
      const stopper = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        stdoutLogger({ event: 'signal', signal });
        stopper.abort();
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      try {
        await runRefapp(opts.config, { signal: stopper.signal });
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
    });
}

/** Loads the config, serves until `signal` aborts, then shuts down gracefully. */
export async function runRefapp(configFile: string, opts: RefappOptions & { signal: AbortSignal }): Promise<void> {
  const log: Logger = opts.log ?? stdoutLogger;
  const config = await loadRefappConfig(configFile);
  await warnIfReadableByOthers(configFile, log);
  const app = await startRefapp(config, { ...opts, log });
  if (!opts.signal.aborted) {
    await new Promise<void>((resolve) => opts.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  await app.close();
}

/** The file holds the database password; say so (without the password) when others can read it. */
async function warnIfReadableByOthers(file: string, log: Logger): Promise<void> {
  const { mode } = await stat(file);
  if ((mode & 0o004) !== 0) {
    log({ event: 'config-warning', file, warning: 'readable by every user but holds the database password', fix: `chmod o-rwx ${file}` });
  }
}
