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
    .option('--timeout <ms>', 'deadline of each command and request', ms, 5000)
    .option('--no-keep', "do not keep the report in etcd for the dashboard's Doctor page");
  labOption(cmd, lab).action(async (o: { config: string; lab?: boolean; json?: boolean; strict?: boolean; timeout: number; keep: boolean }) => {
    const { doctorTarget } = await import('../doctor/target.ts');
    const { runDoctor } = await import('../doctor/doctor.ts');
    const { formatReport } = await import('../doctor/format.ts');
    const target = o.lab ? await requireLab(lab).doctor() : await doctorTarget(o);
    const report = await runDoctor({ ...target, probeTimeoutMs: o.timeout, strict: o.strict });
    process.stdout.write(`${o.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
    process.exitCode = report.exitStatus;
    if (o.keep) {
      const { keepCliReport } = await import('../doctor/keep.ts');
      // The report and its exit status stand either way: keeping it is for the dashboard.
      await keepCliReport(target.cluster, target.pkiDir, report).catch((err: unknown) =>
        process.stderr.write(`note: the report was not kept for the dashboard's Doctor page: ${(err as Error).message.split('\n')[0]}\n`),
      );
    }
  });
}
