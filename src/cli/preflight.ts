/** `vigil preflight`: can these machines take the cluster? The work is in src/apply/preflight.ts, loaded on use. */
import type { Command } from 'commander';
import { labOption, requireLab, type LabTarget } from './checkout.ts';

export function registerPreflight(program: Command, lab?: LabTarget): void {
  const cmd = program
    .command('preflight')
    .description('before installing: OS and version, root or sudo, package manager, ports free and reachable between the machines, clocks, disk; read-only')
    .option('-c, --config <file>', 'cluster file (SSH trust files beside it, from `vigil init`)', 'vigil.yaml')
    .option('--json', 'machine-readable report');
  labOption(cmd, lab).action(async (o: { config: string; lab?: boolean; json?: boolean }) => {
    const { doctorTarget } = await import('../doctor/target.ts');
    const { evaluatePreflight, formatPreflight, gatherPreflight } = await import('../apply/preflight.ts');
    const target = o.lab ? await requireLab(lab).doctor() : await doctorTarget(o);
    const facts = await Promise.all(
      target.cluster.machines.map(async (m) => {
        const shell = await target.openShell(m).catch((err: unknown) => err as Error);
        if (shell instanceof Error) return { machine: m.name, reachable: { ok: false as const, error: shell.message } };
        try {
          return await gatherPreflight(shell, m, target.cluster);
        } finally {
          await shell.close();
        }
      }),
    );
    const findings = evaluatePreflight(facts, target.cluster);
    process.stdout.write(`${o.json ? JSON.stringify({ machines: facts, findings }, null, 2) : formatPreflight(facts, findings)}\n`);
    process.exitCode = findings.some((f) => f.severity === 'fail') ? 1 : 0;
  });
}
