/**
 * What a checkout's `vigil` (bin/vigil.js) adds to the program the artifact installs on the
 * machines (src/cli/artifact-entry.ts): the lab's and the reference application's commands, and
 * the running lab as the target of `--lab` (operator commands, doctor, preflight). The seam
 * between production code and the lab: the lab's folder supplies these (src/lab/cli.ts,
 * src/lab/target.ts) and production code never loads a module of it, so the artifact's bundle
 * carries none.
 */
import { Option, type Command } from 'commander';
import type { DoctorTarget } from '../doctor/target.ts';
import type { OpsOptions } from '../ops/context.ts';
import { VigilError, problem } from '../util/errors.ts';

/** The running lab, as `--lab` reaches it. */
export interface LabTarget {
  /** Its cluster file and the lab admin's certificate, for status, switchover, events ... */
  ops: Required<Pick<OpsOptions, 'target'>>;
  /** Its cluster and machines for doctor and preflight: shells into the machines, `vigil lab` commands as fixes. */
  doctor(): Promise<DoctorTarget>;
}

export interface CheckoutExtras {
  /** Commands added to `vigil` (`vigil lab ...`, `vigil refapp`). */
  commands: ((program: Command) => void)[];
  lab: LabTarget;
}

/** The lab `--lab` names; without a checkout's extras (the installed artifact) a USAGE error that says where `--lab` works. */
export function requireLab(lab: LabTarget | undefined): LabTarget {
  if (lab) return lab;
  throw new VigilError('USAGE', [
    problem(
      '--lab',
      'works only from a Vigil checkout: this `vigil` is the installed artifact, which carries no lab',
      'run the command from the checkout that runs the lab (`npx vigil ... --lab`), or name the cluster file with -c',
    ),
  ]);
}

/** `--lab` on a command: shown with a checkout's lab; hidden without one, where it only says where it works (requireLab). */
export function labOption(cmd: Command, lab: LabTarget | undefined): Command {
  const option = new Option('--lab', 'the running lab instead of a cluster file');
  return cmd.addOption(lab ? option : option.hideHelp());
}
