/**
 * Entry point of the reference application's bundle, /opt/vigil/lib/vigil-refapp.mjs (built by
 * src/apply/artifact.ts, installed by apply on the app machines that run vigil-refapp.service):
 * `node /opt/vigil/lib/vigil-refapp.mjs [--config FILE]`, as the unit runs it
 * (src/render/systemd.ts refappUnit). A checkout runs the same command as `vigil refapp`.
 */
import { runProgram } from '../cli/run.ts';
import { refappCommand } from './cli.ts';

process.exitCode = await runProgram(refappCommand('vigil-refapp').version('0.1.0').exitOverride(), process.argv);
