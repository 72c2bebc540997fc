/** `vigil init`: the cluster files from answers (a file and flags) or from questions. The work is in src/init, loaded on use. */
import { Option, type Command } from 'commander';
import type { InitOptions } from '../init/init.ts';
import { VigilError, problem } from '../util/errors.ts';

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** Standard input to its end (a password piped in); `flag` names the option in the error. */
export async function readStdin(flag = '--ssh-password-stdin', otherwise = 'leave the flag out and answer the question'): Promise<string> {
  // On a terminal this would wait for an end of file nobody types: the password must be piped in.
  if (process.stdin.isTTY)
    throw new VigilError('USAGE', [problem(flag, 'stdin is a terminal', `pipe the password in: \`${flag} < password-file\`, or ${otherwise}`)]);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description(
      "write vigil.yaml, the secrets file, the cluster CA and the admin SSH key; pin every machine's SSH host key (questions on a terminal, or --answers)",
    )
    .option('--answers <file>', 'answers file (YAML, see docs/init.md); mode 600 when it holds passwords')
    .option('-d, --dir <dir>', 'directory to write into', '.')
    .option('--force', 'replace the files of an earlier init (they are kept in a backup directory): a new CA, admin key and passwords')
    .option('--accept-host-keys', 'pin the SSH host keys the machines offer without asking (needed without a terminal); the fingerprints are printed')
    .option('--no-ssh', 'contact no machine: no host key pinned, no key installed')
    .option('--pin-only', 'only pin the host keys of the machines of the existing vigil.yaml in --dir that have none yet')
    .option('--ssh-password-stdin', 'read the SSH password (the same on every machine) from stdin; used once to install the admin key')
    .addOption(new Option('--topology <name>', 'pair, distributed or custom').choices(['pair', 'distributed', 'custom']))
    .option('--name <name>', 'cluster name')
    .option('--machine <name=address[:roles]>', 'a machine, e.g. app1=10.0.0.11 or db3=10.0.0.23:db (repeatable)', collect)
    .option('--ssh-user <user>', 'SSH user for every machine (default root; others need passwordless sudo)')
    .option('--ssh-port <port>', 'SSH port for every machine (default 22)')
    .option('--email-to <addresses>', 'alert recipients, comma separated')
    .option('--email-from <address>', 'alert sender address')
    .option('--smtp-host <host>', 'SMTP relay for alerts')
    .option('--smtp-port <port>', 'SMTP port (default 25)')
    .action(async (o: InitOptions) => {
      const { runInit } = await import('../init/init.ts');
      process.exitCode = await runInit(o, { say, interactive: process.stdin.isTTY === true && process.stdout.isTTY === true, readStdin: () => readStdin() });
    });
}
