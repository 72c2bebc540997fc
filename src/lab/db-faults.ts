/**
 * Faults of the database primary that a kill does not cover: Patroni, PostgreSQL or the whole
 * machine paused (SIGSTOP) and resumed, and Patroni killed with PostgreSQL left running. Each is
 * run while a client writes through the proxy's :5000 and HAProxy's view of the :5000 servers is
 * sampled, so a test or a benchmark sees what a client would: acknowledged writes lost, two
 * servers up behind :5000 at once, writes acknowledged by the old primary after the new one took
 * over, and how long writes stopped.
 */
import { withRole, type Machine } from '../config/schema.ts';
import { POSTGRES_BACKEND } from '../render/haproxy.ts';
import { sleep, waitFor } from '../util/exec.ts';
import { findPrimary, hasSyncStandby, labRuntime, labStart, type LabHandle } from './lab.ts';
import { listProcesses, signalProcesses } from './procs.ts';
import { AckWriter } from './writer.ts';

export const DB_FAULTS = ['patroni-pause', 'postgres-pause', 'machine-pause', 'patroni-kill'] as const;
export type DbFault = (typeof DB_FAULTS)[number];

export interface DbFaultReport {
  fault: DbFault;
  /** The primary the fault hit. */
  old: string;
  /** The primary once the cluster is whole again. */
  primaryAfter: string | null;
  /** From the fault to the first write acknowledged by another server; null if none came. */
  backAfterMs: number | null;
  /** How long the fault lasted (the pause, or Patroni dead). */
  heldMs: number;
  acked: number;
  /** Sequence numbers acknowledged but absent at the end: lost writes. */
  missing: number[];
  /** The most servers HAProxy had up behind :5000 in one sample. */
  mostUp: number;
  samples: number;
  /** Writes the old primary acknowledged after another server had acknowledged one: a split brain. */
  oldAcksAfterNew: number;
  /** Why the cluster did not become whole again (a primary with its synchronous standby, Patroni on every machine), if it did not. */
  notHealed: string | null;
}

export interface DbFaultOptions {
  /** How long a pause lasts, or how long Patroni stays dead, before it resumes (or a supervisor would restart it). */
  holdMs?: number;
  /** Called with progress lines. */
  say?: (line: string) => void;
}

/**
 * Runs one fault against the current primary and waits until the cluster is whole again (a
 * primary with a synchronous standby, Patroni running on every database machine). The lab must be
 * settled, with a synchronous standby, before it is called.
 */
export async function runDbFault(lab: LabHandle, fault: DbFault, o: DbFaultOptions = {}): Promise<DbFaultReport> {
  const { cluster, secrets } = lab;
  const say = o.say ?? (() => {});
  const holdMs = o.holdMs ?? 30_000;
  const proxy = withRole(cluster, 'proxy')[0]!;
  const runtime = labRuntime(proxy.name);
  const old = await waitFor('a primary', () => findPrimary(cluster), 60_000, 250);
  await waitFor('a synchronous standby', () => hasSyncStandby(cluster, old), 120_000, 250);

  let mostUp = 0;
  let samples = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const servers = await runtime.servers(POSTGRES_BACKEND).catch(() => undefined);
      if (servers) {
        samples++;
        mostUp = Math.max(mostUp, servers.filter((s) => s.op === 'up' && s.admin === 'ready').length);
      }
      await sleep(100);
    }
  })();

  const writer = new AckWriter({ host: proxy.address, port: cluster.proxy.postgresPort, user: cluster.database.appUser, password: secrets.appDbPassword, database: cluster.database.appDatabase, intervalMs: 50 });
  await writer.prepare();
  writer.start();
  let t0 = 0;
  let notHealed: string | null = null;
  try {
    const steadyFrom = performance.now();
    await waitFor('steady writes', async () => (writer.acked.filter((s) => s.atMs > steadyFrom).length >= 20 ? true : undefined), 60_000, 100);
    t0 = performance.now();
    say(`${fault}: on ${old.name}, for ${holdMs / 1000} s`);
    await inject(old, fault, 'start');
    await sleep(holdMs);
    await inject(old, fault, 'end');
    say(`${fault}: ended on ${old.name}`);
    try {
      await waitFor('the database tier whole again', async () => {
        const p = await findPrimary(cluster);
        if (!p || !(await hasSyncStandby(cluster, p).catch(() => undefined))) return undefined;
        return (await Promise.all(withRole(cluster, 'db').map(patroniRuns))).every(Boolean) ? true : undefined;
      }, 120_000, 500);
      // A few writes on the settled cluster, so a late split brain shows as well.
      const after = writer.acked.length;
      await waitFor('writes after the fault', async () => (writer.acked.length >= after + 20 ? true : undefined), 60_000, 100);
    } catch (err) {
      notHealed = (err as Error).message;
    }
  } finally {
    await writer.stop();
    sampling = false;
    await sampler;
  }
  const firstNew = writer.firstAfter(t0, old.address);
  const primaryAfter = (await findPrimary(cluster))?.name ?? null;
  return {
    fault,
    old: old.name,
    primaryAfter,
    backAfterMs: firstNew ? Math.round(firstNew.atMs - t0) : null,
    heldMs: holdMs,
    acked: writer.acked.length,
    missing: await writer.missing(),
    mostUp,
    samples,
    oldAcksAfterNew: firstNew ? writer.acked.filter((s) => s.atMs > firstNew.atMs && s.server === old.address).length : 0,
    notHealed,
  };
}

async function inject(m: Machine, fault: DbFault, phase: 'start' | 'end'): Promise<void> {
  const signal = phase === 'start' ? 'SIGSTOP' : 'SIGCONT';
  switch (fault) {
    case 'patroni-pause':
      await signalProcesses(m.name, signal, 'patroni');
      return;
    case 'postgres-pause':
      await signalProcesses(m.name, signal, 'postgres');
      return;
    case 'machine-pause':
      await signalProcesses(m.name, signal);
      return;
    case 'patroni-kill':
      // As a Patroni that crashed and whose restart failed for a while; then the service
      // manager's restart (Restart=on-failure), unless something started it meanwhile.
      if (phase === 'start') await signalProcesses(m.name, 'SIGKILL', 'patroni');
      else if (!(await patroniRuns(m))) await labStart(m.name, 'patroni');
      return;
  }
}

async function patroniRuns(m: Machine): Promise<boolean> {
  return (await listProcesses(m.name)).some((p) => p.name === 'patroni');
}
