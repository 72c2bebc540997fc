/**
 * Runs a commander program and turns its outcome into an exit status: the one place errors are
 * printed, with their code and fix; nothing below prints a stack trace. Used by `vigil`
 * (src/cli/main.ts) and by the reference application's bundle (src/refapp/entry.ts).
 */
import { CommanderError, type Command } from 'commander';
import { EXIT_STATUS, isCodedError } from '../util/errors.ts';

/** Parses `argv` (node's, program name included) with `program` and returns the exit status. */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  // Output piped into a reader that stopped (`vigil lab status | head -1`): stop quietly, as other tools do.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // Every error with a code of the registry (docs/errors.md) is the user's to act on: printed
    // once, with its fix, exit 1 (or the code's own status, EXIT_STATUS). Anything else is a bug: exit 70 with the stack.
    if (isCodedError(err)) {
      process.stderr.write(`error [${err.code}]\n${err.message}\n`);
      return EXIT_STATUS[err.code] ?? 1;
    }
    process.stderr.write(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 70;
  }
}
