/** `vigil apply` and `vigil plan`: bring the machines to what the cluster file describes, or show what that would change. The work is in src/apply, loaded on use. */
import type { Command } from 'commander';
import { VigilError, problem } from '../util/errors.ts';

interface ApplyCliOptions {
  config: string;
  json?: boolean;
  waitSeconds: string;
  offline?: string;
  trust?: string;
}

async function runApply(o: ApplyCliOptions, dryRun: boolean): Promise<number> {
  const wait = Number(o.waitSeconds);
  if (!Number.isInteger(wait) || wait < 10)
    throw new VigilError('USAGE', [
      problem('--wait-seconds', `"${o.waitSeconds}" is not a whole number of seconds of at least 10`, 'pass e.g. --wait-seconds 300'),
    ]);
  const { dirname, join } = await import('node:path');
  const { loadCluster, loadSecrets } = await import('../config/load.ts');
  const { openClusterSsh, sshFiles } = await import('../remote/ssh.ts');
  const { applyCluster } = await import('../apply/apply.ts');
  if (o.offline !== undefined && o.trust === undefined)
    throw new VigilError('USAGE', [
      problem(
        '--offline',
        'needs --trust FILE: the bundle is verified against the trust file before anything is installed from it',
        'pass --trust airgap-trust.json',
      ),
    ]);
  if (o.trust !== undefined && o.offline === undefined)
    throw new VigilError('USAGE', [problem('--trust', 'is used only with --offline BUNDLE', 'pass --offline BUNDLE, or leave --trust out')]);
  const started = performance.now();
  const cluster = await loadCluster(o.config);
  const secrets = await loadSecrets(cluster);
  const report = await applyCluster({
    cluster,
    secrets,
    clusterFile: o.config,
    pkiDir: join(dirname(o.config), 'pki'),
    knownHostsFile: sshFiles(o.config).knownHosts,
    openShell: (m) => openClusterSsh(o.config, m),
    dryRun,
    waitMs: wait * 1000,
    offline: o.offline === undefined ? undefined : { bundle: o.offline, trustPath: o.trust! },
    // Each line with the seconds since the start: long steps (packages, the tiers coming up) show where the time goes.
    progress: (line) => void (o.json ? process.stderr : process.stdout).write(`${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s  ${line}\n`),
  });
  if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return 0;
}

const COMMANDS = [
  {
    name: 'apply',
    dryRun: false,
    description:
      'bring every machine to what the cluster file describes, over SSH: preflight, packages, files, certificates, passwords, file-sync keys, services; a re-run changes only what differs',
  },
  { name: 'plan', dryRun: true, description: 'show what `vigil apply` would change on every machine, changing nothing' },
];

export function registerApply(program: Command): void {
  for (const c of COMMANDS) {
    program
      .command(c.name)
      .description(c.description)
      .option('-c, --config <file>', 'cluster file (SSH trust files and pki/ beside it, from `vigil init`)', 'vigil.yaml')
      .option('--json', 'print the changes as JSON on stdout (progress goes to stderr)')
      .option('--offline <bundle>', 'install the packages from the package sets this signed bundle carries (docs/airgap.md part 3), with no package mirror')
      .option('--trust <file>', 'with --offline: the trust file the bundle is verified against')
      .option('--wait-seconds <n>', 'how long to wait for each tier to come up (etcd, a primary, the application); plan does not wait', '180')
      .action(async (o: ApplyCliOptions) => {
        process.exitCode = await runApply(o, c.dryRun);
      });
  }
}
