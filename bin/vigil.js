#!/usr/bin/env node
// Entry point of the `vigil` command in a checkout. Runs the TypeScript sources through tsx so a
// checkout needs no build step. It is the program the artifact installs on the machines
// (src/cli/artifact-entry.ts, bundled by src/apply/artifact.ts) plus what runs from a checkout
// only (src/cli/checkout.ts): `vigil lab ...`, `vigil refapp`, and `--lab` on the operator
// commands, doctor and preflight.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const { registerLab } = await import('../src/lab/cli.ts');
const { labTarget } = await import('../src/lab/target.ts');
const { registerRefapp } = await import('../src/refapp/cli.ts');
process.exitCode = await main(process.argv, { commands: [registerLab, registerRefapp], lab: labTarget });
