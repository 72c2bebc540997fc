/**
 * `vigil doctor`: gathers facts from every machine (through its RemoteShell) and from the admin's
 * view of the cluster, all in parallel, each machine under one deadline so a dead machine costs
 * that deadline and no more; then evaluates them into a report.
 */
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import { renderMachine } from '../render/index.ts';
import type { RenderedFile } from '../render/file.ts';
import type { RemoteShell } from '../remote/types.ts';
import type { LoadedPki } from '../pki/ca.ts';
import type { EvalContext } from './checks/context.ts';
import { buildReport, evaluate } from './evaluate.ts';
import type { Fixes } from './fixes.ts';
import { gatherCluster } from './gather-cluster.ts';
import { gatherMachine } from './gather-machine.ts';
import { failed, type DoctorReport, type MachineFacts, type PlatformKind } from './types.ts';

export interface DoctorOptions {
  cluster: Cluster;
  secrets: Secrets;
  platform: PlatformKind;
  fixes: Fixes;
  /**
   * Opens a shell on a machine (the lab's namespaces, or SSH). Without one (an observer running
   * doctor from the dashboard has no shell on the machines), only what is seen from here is
   * checked: every machine's own checks are reported as not run, with `NO_SHELL`.
   */
  openShell?: (m: Machine) => Promise<RemoteShell>;
  /** Directory with the admin's certificate (ca.pem, admin.pem, admin.key); or `identity`. */
  pkiDir?: string;
  /** A certificate of the cluster CA already loaded, in place of the admin's from `pkiDir`. */
  identity?: LoadedPki;
  /** Deadline of each command and request (default 5 s). */
  probeTimeoutMs?: number;
  /** Deadline of each TCP connection attempt between machines (default 3 s). */
  connectTimeoutMs?: number;
  /** Deadline of a whole machine, connection included (default 30 s). */
  machineTimeoutMs?: number;
  /** Warnings count as failures for the exit status. */
  strict?: boolean;
}

/** Resolves with `late()` if `p` takes longer than `ms`; `p` keeps running, and `cleanup` gets its value if it arrives. */
function within<T>(p: Promise<T>, ms: number, late: () => T, cleanup?: (v: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      resolve(late());
    }, ms);
  });
  const work = p.then((v) => {
    if (timedOut) cleanup?.(v);
    return v;
  });
  // race subscribes to `work`, so a rejection after the deadline is handled, not left floating.
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function rendered(cluster: Cluster, secrets: Secrets): Map<string, RenderedFile[]> {
  const out = new Map<string, RenderedFile[]>();
  for (const m of cluster.machines) {
    try {
      out.set(m.name, renderMachine(cluster, secrets, m.name));
    } catch {
      out.set(m.name, []); // a cluster that cannot be rendered fails `vigil validate`; doctor checks what it can
    }
  }
  return out;
}

/** Why a machine's own checks did not run when doctor has no shell on the machines. */
export const NO_SHELL =
  "not run from here: the machine's own checks (listening ports, files, certificates, password files, disk, clock) need a shell on it; run `vigil doctor` from the admin's machine";

async function machineFacts(o: DoctorOptions, m: Machine, files: RenderedFile[], probeTimeoutMs: number, connectTimeoutMs: number): Promise<MachineFacts> {
  const base = { name: m.name, address: m.address, roles: m.roles };
  if (!o.openShell) return { ...base, reachable: failed(NO_SHELL), gathered: false };
  const openShell = o.openShell;
  const machineTimeoutMs = o.machineTimeoutMs ?? 30_000;
  const opened = within<RemoteShell | Error>(
    openShell(m).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
    machineTimeoutMs,
    () => new Error(`no connection within ${machineTimeoutMs} ms`),
    (late) => void (late instanceof Error ? undefined : late.close().catch(() => {})),
  );
  const started = performance.now();
  const shell = await opened;
  if (shell instanceof Error) return { ...base, reachable: failed(shell.message) };
  try {
    const left = Math.max(1000, machineTimeoutMs - (performance.now() - started));
    return await within(gatherMachine(shell, m, { cluster: o.cluster, secrets: o.secrets, rendered: files, probeTimeoutMs, connectTimeoutMs }), left, () => ({
      ...base,
      reachable: failed(`its checks did not finish within ${machineTimeoutMs} ms`),
    }));
  } catch (err) {
    return { ...base, reachable: failed(err instanceof Error ? err.message : String(err)) };
  } finally {
    await shell.close().catch(() => {});
  }
}

export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const startedAt = new Date();
  const t0 = performance.now();
  const probeTimeoutMs = o.probeTimeoutMs ?? 5000;
  const connectTimeoutMs = o.connectTimeoutMs ?? 3000;
  const files = rendered(o.cluster, o.secrets);
  const [clusterFacts, ...machines] = await Promise.all([
    gatherCluster({
      cluster: o.cluster,
      ...(o.pkiDir !== undefined ? { pkiDir: o.pkiDir } : {}),
      ...(o.identity ? { identity: o.identity } : {}),
      timeoutMs: probeTimeoutMs,
      connectTimeoutMs,
    }),
    ...o.cluster.machines.map((m) => machineFacts(o, m, files.get(m.name) ?? [], probeTimeoutMs, connectTimeoutMs)),
  ]);
  const ctx: EvalContext = {
    cluster: o.cluster,
    facts: { cluster: clusterFacts, machines },
    platform: o.platform,
    fixes: o.fixes,
    rendered: files,
    now: new Date(),
  };
  return buildReport(ctx, evaluate(ctx), { startedAt, durationMs: performance.now() - t0, strict: o.strict });
}
