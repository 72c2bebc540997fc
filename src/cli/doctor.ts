/** `vigil doctor`: every check on every machine; the work is in src/doctor, loaded on use. */
import { InvalidArgumentError, type Command } from 'commander';

const ms = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 100) throw new InvalidArgumentError('must be a number of milliseconds, at least 100');
  return n;
};

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check every machine: ports, services, ownership, etcd, Patroni, HAProxy, certificates, passwords, clocks, disks, versions; each finding with its fix')
    .option('-c, --config <file>', 'cluster file (its pki/ directory holds the admin certificate; SSH trust files beside it)', 'vigil.yaml')
    .option('--lab', 'the running lab instead of a cluster file')
    .option('--json', 'machine-readable report')
    .option('--strict', 'warnings make the exit status non-zero too')
    .option('--timeout <ms>', 'deadline of each command and request', ms, 5000)
    .action(async (o: { config: string; lab?: boolean; json?: boolean; strict?: boolean; timeout: number }) => {
      const { doctorTarget } = await import('../doctor/target.ts');
      const { runDoctor } = await import('../doctor/doctor.ts');
      const { formatReport } = await import('../doctor/format.ts');
      const report = await runDoctor({ ...(await doctorTarget(o)), probeTimeoutMs: o.timeout, strict: o.strict });
      process.stdout.write(`${o.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
      process.exitCode = report.exitStatus;
    });
}
