/** `vigil validate [FILE]`; the work is in src/config/validate.ts, loaded on use. */
import type { Command } from 'commander';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('check the cluster file and its secrets file; print a summary, or the resolved cluster with --json')
    .argument('[file]', 'cluster file', 'vigil.yaml')
    .option('--json', 'print the resolved cluster (presets and defaults applied; never the secrets) as JSON')
    .action(async (file: string, opts: { json?: boolean }) => (await import('../config/validate.ts')).validate(file, opts));
}
