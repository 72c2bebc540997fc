/** `vigil doctor`: every check on every machine; the work is in src/doctor, loaded on use. */
import { InvalidArgumentError, type Command } from 'commander';
import { labOption, requireLab, type LabTarget } from './checkout.ts';

const ms = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 100) throw new InvalidArgumentError('must be a number of milliseconds, at least 100');
  return n;
};

export function registerDoctor(program: Command, lab?: LabTarget): void {
  const cmd = program
    .command('doctor')
    .description(
      'check every machine: ports, services, ownership, etcd, Patroni, HAProxy, certificates, passwords, clocks, disks, versions; each finding with its fix',
    )
    .option('-c, --config <file>', 'cluster file (its pki/ directory holds the admin certificate; SSH trust files beside it)', 'vigil.yaml')
    .option('--json', 'machine-readable report')
    .option('--strict', 'warnings make the exit status non-zero too')
    .option('--timeout <ms>', 'deadline of each command and request', ms, 5000);
  labOption(cmd, lab).action(async (o: { config: string; lab?: boolean; json?: boolean; strict?: boolean; timeout: number }) => {
    const { doctorTarget } = await import('../doctor/target.ts');
    const { runDoctor } = await import('../doctor/doctor.ts');
    const { formatReport } = await import('../doctor/format.ts');
    const target = o.lab ? await requireLab(lab).doctor() : await doctorTarget(o);
    const report = await runDoctor({ ...target, probeTimeoutMs: o.timeout, strict: o.strict });
    process.stdout.write(`${o.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
    process.exitCode = report.exitStatus;
  });
}
