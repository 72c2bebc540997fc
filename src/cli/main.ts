/**
 * The `vigil` command: parses the command line and hands each sub-command to its module. The
 * program here is the one the artifact installs on every machine (src/cli/artifact-entry.ts); a
 * checkout's `vigil` (bin/vigil.js) passes CheckoutExtras, which add the lab's and the reference
 * application's commands and `--lab` (src/cli/checkout.ts).
 */
import { Command } from 'commander';
import type { CheckoutExtras } from './checkout.ts';
import { runProgram } from './run.ts';
import { registerValidate } from './validate.ts';
import { registerRender } from './render.ts';
import { registerDaemons } from './agent.ts';
import { registerOps } from './ops.ts';
import { registerInit } from './init.ts';
import { registerDoctor } from './doctor.ts';
import { registerPreflight } from './preflight.ts';
import { registerApply } from './apply.ts';
import { registerAirgap } from './airgap.ts';
import { registerDashboard } from './dashboard.ts';

export function buildProgram(extras?: CheckoutExtras): Command {
  const program = new Command('vigil')
    .description('High availability for on-premise service-management applications')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError();
  registerInit(program);
  registerValidate(program);
  registerRender(program);
  for (const register of extras?.commands ?? []) register(program);
  registerOps(program, extras?.lab);
  registerPreflight(program, extras?.lab);
  registerApply(program);
  registerDoctor(program, extras?.lab);
  registerAirgap(program, extras?.lab);
  registerDashboard(program);
  registerDaemons(program);
  return program;
}

/** Runs the CLI and returns the exit status. */
export function main(argv: string[], extras?: CheckoutExtras): Promise<number> {
  return runProgram(buildProgram(extras), argv);
}
