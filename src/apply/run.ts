/**
 * What one `vigil apply` (or `vigil plan`) run carries from step to step: its options, the
 * changes it made (or, for plan, would make) with one progress line each, the service actions
 * changed files ask for, and the two ways a step runs: on one machine, with its failure named by
 * machine and step, and on every machine at once, with every failure reported.
 */
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';
import { VigilError, problem, type Problem } from '../util/errors.ts';
import type { UnitAction } from './desired.ts';

export type ApplyStep =
  | 'connect'
  | 'preflight'
  | 'packages'
  | 'distro-services'
  | 'directories'
  | 'files'
  | 'certificates'
  | 'tls'
  | 'passwords'
  | 'sync-keys'
  | 'sync-trust'
  | 'services'
  | 'database'
  | 'verify';

export interface Change {
  machine: string;
  step: ApplyStep;
  what: string;
}

export interface ApplyOptions {
  cluster: Cluster;
  secrets: Secrets;
  /** The admin's cluster file (copied to every machine) and the trust files beside it. */
  clusterFile: string;
  /** The cluster CA (ca.pem, ca.key) on the admin's machine. */
  pkiDir: string;
  /** Host keys pinned by `vigil init`: file sync's known_hosts are made from them. */
  knownHostsFile: string;
  openShell(m: Machine): Promise<RemoteShell>;
  /** How openShell reaches the machines, for the progress line (default: SSH with the pinned host keys). */
  transport?: string;
  /** `vigil plan`: look, report, change nothing. */
  dryRun: boolean;
  progress(line: string): void;
  /** `--offline BUNDLE --trust FILE`: packages from the bundle's package sets only (src/apply/offline.ts). */
  offline?: { bundle: string; trustPath: string };
  /** Give up waiting for a tier (etcd healthy, a primary, the application) after this long (default 180 s). */
  waitMs?: number;
}

export interface ApplyReport {
  changes: Change[];
  seconds: number;
  verified: boolean;
}

export class Run {
  readonly changes: Change[] = [];
  /** Unit actions asked for by changed files, per machine. */
  readonly pending = new Map<string, UnitAction[]>();
  readonly unitFilesChanged = new Set<string>();
  /** Each app machine's file-sync public key, read or made by the sync-keys step. */
  readonly syncPubs = new Map<string, string>();
  readonly width: number;

  constructor(readonly o: ApplyOptions) {
    this.width = Math.max(...o.cluster.machines.map((m) => m.name.length));
  }

  change(machine: string, step: ApplyStep, what: string): void {
    this.changes.push({ machine, step, what });
    this.o.progress(`${machine.padEnd(this.width)}  ${step}: ${this.o.dryRun ? 'would ' : ''}${what}`);
  }

  note(machine: string, step: ApplyStep, what: string): void {
    this.o.progress(`${machine.padEnd(this.width)}  ${step}: ${what}`);
  }

  ask(machine: string, actions: UnitAction[]): void {
    const list = this.pending.get(machine) ?? [];
    for (const a of actions) if (!list.some((x) => x.unit === a.unit && x.action === a.action)) list.push(a);
    this.pending.set(machine, list);
  }
}

/** Wraps a step: any failure becomes an APPLY error naming the machine and the step, with the fix. */
export async function step<T>(machine: string, name: ApplyStep, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const here = `${machine}, step ${name}`;
    // Already placed by an inner step (or by this one): keep it as it is.
    if (err instanceof VigilError && err.code === 'APPLY' && err.problems.every((p) => p.where.includes(', step '))) throw err;
    const problems: Problem[] =
      err instanceof VigilError
        ? err.problems.map((p) => problem(here, `${p.where}: ${p.message}`, p.fix))
        : [problem(here, (err as Error).message, `fix the cause and run \`vigil apply\` again; it resumes where it stopped`)];
    throw new VigilError('APPLY', problems, { cause: err });
  }
}

/** Runs fn for every machine at once; every failure is reported, not only the first. */
export async function eachMachine(machines: Machine[], fn: (m: Machine) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(machines.map(fn));
  const problems = results.flatMap((r) =>
    r.status === 'rejected' ? (r.reason instanceof VigilError ? r.reason.problems : [problem('apply', String(r.reason), 'run `vigil apply` again')]) : [],
  );
  if (problems.length) throw new VigilError('APPLY', problems, { cause: results.find((r) => r.status === 'rejected')?.reason });
}
