/**
 * The `vigil` command: parses the command line and hands each sub-command to its module.
 * Errors are printed once here, with their code and fix; nothing below prints a stack trace.
 */
import { Command, CommanderError } from 'commander';
import { isCodedError } from '../util/errors.ts';
import { registerValidate } from './validate.ts';
import { registerRender } from './render.ts';
import { registerLab } from './lab.ts';
import { registerRefapp } from './refapp.ts';
import { registerDaemons } from './agent.ts';
import { registerOps } from './ops.ts';
import { registerInit } from './init.ts';
import { registerDoctor } from './doctor.ts';
import { registerPreflight } from './preflight.ts';
import { registerApply } from './apply.ts';

export function buildProgram(): Command {
  const program = new Command('vigil')
    .description('High availability for on-premise service-management applications')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError();
  registerInit(program);
  registerValidate(program);
  registerRender(program);
  registerLab(program);
  registerRefapp(program);
  registerOps(program);
  registerPreflight(program);
  registerApply(program);
  registerDoctor(program);
  registerDaemons(program);
  return program;
}

/** Runs the CLI and returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  // Output piped into a reader that stopped (`vigil lab status | head -1`): stop quietly, as other tools do.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // Every error with a code of the registry (docs/errors.md) is the user's to act on: printed
    // once, with its fix, exit 1. Anything else is a bug: exit 70 with the stack.
    if (isCodedError(err)) {
      process.stderr.write(`error [${err.code}]\n${err.message}\n`);
      return 1;
    }
    process.stderr.write(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 70;
  }
}
