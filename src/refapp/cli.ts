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
import { REFAPP_ACTIVATION_PATH } from '../layout/refapp.ts';
import { stdoutLogger, type Logger } from './http.ts';
import { loadRefappConfig } from './properties.ts';
import { startRefapp, type RefappOptions } from './server.ts';
import { startAnalytics } from './analytics.ts';

const DESCRIPTION = 'run the reference ticket application (lab stand-in for ServiceOps)';

/** The command, named `name`: `refapp` under `vigil`, `vigil-refapp` as a program of its own. */
export function refappCommand(name: string): Command {
  return new Command(name)
    .description(DESCRIPTION)
    .option('--config <file>', 'application properties file', PATHS.refappConfig)
    .option(
      '--forward-activation',
      "read one activation call (JSON) on standard input and hand it to the running application's activation endpoint: the `command` form of Vigil's activation hook (docs/application-contract.md); exit 0 once it was answered 2xx",
    )
    .option(
      '--analytics',
      "run the application's analytics service instead (its second service, standing for the seed's cm-analytics: vigil-refapp-analytics.service): it reports from the database on a timer and answers /health and /report on 127.0.0.1, analytics.port",
    )
    .action(async (opts: { config: string; forwardActivation?: boolean; analytics?: boolean }) => {
      if (opts.forwardActivation) return forwardActivation(opts.config);
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
        if (opts.analytics) await runAnalytics(opts.config, stopper.signal);
        else await runRefapp(opts.config, { signal: stopper.signal, reloads });
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

/** `--analytics`: the analytics service until `signal` aborts. */
async function runAnalytics(configFile: string, signal: AbortSignal): Promise<void> {
  const config = await loadRefappConfig(configFile);
  await warnIfReadableByOthers(configFile, stdoutLogger);
  const service = await startAnalytics(config);
  if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  await service.close();
}

/**
 * The `command` form of the activation hook for the reference application: what the agent writes
 * on standard input goes to the application's own endpoint on its control port, so the process
 * that runs the background work is the one told. Any failure (not running, a 4xx, no answer
 * within 10 s) is a non-zero exit with the reason on standard error, which the agent logs.
 */
async function forwardActivation(configFile: string): Promise<void> {
  const config = await loadRefappConfig(configFile);
  let body = '';
  for await (const chunk of process.stdin) body += String(chunk);
  const url = `http://127.0.0.1:${config.controlPort}${REFAPP_ACTIVATION_PATH}`;
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (res.status < 200 || res.status > 299) {
    process.stderr.write(`${url} answered ${res.status}: ${text.slice(0, 200)}\n`);
    process.exitCode = 1;
  }
}

/** The file holds the database password; say so (without the password) when others can read it. */
async function warnIfReadableByOthers(file: string, log: Logger): Promise<void> {
  const { mode } = await stat(file);
  if ((mode & 0o004) !== 0) {
    log({ event: 'config-warning', file, warning: 'readable by every user but holds the database password', fix: `chmod o-rwx ${file}` });
  }
}
