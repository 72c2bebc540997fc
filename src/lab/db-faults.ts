/**
 * Faults of the database primary that a kill does not cover: Patroni, PostgreSQL or the whole
 * machine paused (SIGSTOP) and resumed, and Patroni killed with PostgreSQL left running. Each is
 * run while a client writes through the proxy's :5000 and HAProxy's view of the :5000 servers is
 * sampled, so a test or a benchmark sees what a client would: acknowledged writes lost, two
 * servers up behind :5000 at once, writes acknowledged by the old primary after the new one took
 * over, and how long writes stopped.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PATHS } from '../layout/paths.ts';
import { withRole, type Machine } from '../config/schema.ts';
import { inRecoveryByFiles } from '../agent/db-processes.ts';
import { ETCD_CLIENT_PORT, POSTGRES_BACKEND } from '../layout/network.ts';
import { etcdctlTlsFlags } from '../render/etcd.ts';
import { UNITS } from '../layout/units.ts';
import { LabShell } from './shell.ts';
import { sleep, waitFor } from '../util/exec.ts';
import { findPrimary, hasSyncStandby, labDropOutput, labKill, labRevive, labRuntime, labStart, labUnblock, type LabHandle } from './lab.ts';
import { cutOff, healAll, inNetns, netnsPids } from './net.ts';
import { hostPathOf } from './paths.ts';
import { listProcesses, signalProcesses } from './procs.ts';
import { AckWriter } from './writer.ts';
import { readMachineLog } from './logs.ts';

/** The faults that leave a stale primary behind: what the agent's fence is for. */
export const DB_FAULTS = ['patroni-pause', 'postgres-pause', 'machine-pause', 'patroni-kill'] as const;
/**
 * What the fence must sit through without ending a healthy primary: etcd paused (no answer, so no
 * knowledge), the primary's own agent paused (it must not act on what it saw before), Patroni on
 * the primary stopped cleanly and started again after 2 s (what `systemctl restart` does).
 */
export const DB_QUIET_FAULTS = ['etcd-pause', 'agent-pause', 'patroni-restart'] as const;
/**
 * The faults of a primary that the observer's leader release (src/observer/db-release.ts) ends
 * early: its machine killed (revived after the hold), its PostgreSQL killed (Patroni still runs),
 * its machine silent (link down: no answer at all, not even a refusal; up again after the hold),
 * and the primary cut off from etcd (both ways; healed after the hold).
 */
export const DB_RELEASE_FAULTS = ['machine-kill', 'postgres-kill', 'machine-silent', 'etcd-cut'] as const;
/**
 * etcd out of service for the primary while every db machine is healthy (issue 14 §3), what
 * Patroni's failsafe mode rides out: every member paused (SIGSTOP: no answer at all); every member
 * but one paused, so the one left answers but has no quorum (needs three members or more); the
 * primary's packets to etcd's client port dropped, on every member including its own (it still
 * reaches the other db machines, and HAProxy reaches it). Patroni's leader key cannot be renewed
 * by the primary while it lasts; in the first two no member can take it either.
 */
export const DB_ETCD_OUTAGES = ['etcd-pause', 'etcd-no-quorum', 'etcd-port-cut'] as const;
/**
 * One etcd member lost while the others keep their quorum (issue 14 §2): the member etcd's raft
 * leader runs on is killed (SIGKILL), its restarts failing for the hold (as a crashed member that
 * does not come back), then started again. Needs three members or more.
 */
export const DB_ETCD_MEMBER_FAULTS = ['etcd-member-kill'] as const;
export type DbFault =
  | (typeof DB_FAULTS)[number]
  | (typeof DB_QUIET_FAULTS)[number]
  | (typeof DB_RELEASE_FAULTS)[number]
  | (typeof DB_ETCD_OUTAGES)[number]
  | (typeof DB_ETCD_MEMBER_FAULTS)[number];

export interface DbFaultReport {
  fault: DbFault;
  /** The primary the fault hit. */
  old: string;
  /** The primary once the cluster is whole again. */
  primaryAfter: string | null;
  /** From the fault to the first write acknowledged by another server; null if none came. */
  backAfterMs: number | null;
  /**
   * From the fault to the first write acknowledged after the first one that failed, by any server
   * (a primary may also come back where it was: PostgreSQL restarted by its Patroni); 0 when no
   * write failed; null if writes never came back.
   */
  resumedAfterMs: number | null;
  /** How long the fault lasted (the pause, or Patroni dead). */
  heldMs: number;
  /** performance.now() when the fault began, and when it ended: for a second probe beside this one. */
  window: { fromMs: number; toMs: number };
  acked: number;
  /** Writes acknowledged, and writes that failed, while the fault lasted (one write at a time, every 50 ms). */
  inHold: { acked: number; failed: number };
  /** The longest time without an acknowledged write while the fault lasted (from its start to its end). */
  longestGapInHoldMs: number;
  /** Sequence numbers acknowledged but absent at the end: lost writes. */
  missing: number[];
  /** The most servers HAProxy had up behind :5000 in one sample. */
  mostUp: number;
  /**
   * The most servers up behind :5000 in one sample whose PostgreSQL ran as a primary (alive, even
   * if paused, without standby.signal): two writable primaries reachable through :5000. A server
   * HAProxy has not yet marked down after a clean stop is up but not a primary.
   */
  mostPrimariesUp: number;
  samples: number;
  /** Writes the old primary acknowledged after another server had acknowledged one: a split brain. */
  oldAcksAfterNew: number;
  /**
   * Whether PostgreSQL still ran as a primary on the old machine when the fault ended (after the
   * other machine had taken over): a stale primary left standing.
   */
  staleAtEnd: boolean;
  /** The agents' `db-fenced` log lines written during the run, over every db machine. */
  fences: number;
  /** The observers' `db-leader-released` log lines written during the run: leader leases the observer revoked. */
  releases: number;
  /**
   * The proxies whose :5000 server of the old primary was seen in MAINT while the fault lasted
   * (the observer's database release fences every proxy), out of `proxies`.
   */
  oldInMaint: string[];
  /** Every proxy machine sampled. */
  proxies: string[];
  /** HAProxy's log lines about the :5000 servers during the run (up, down, why), to explain a failure. */
  proxyLog: string[];
  /** Why the cluster did not become whole again (a primary with its synchronous standby, Patroni on every machine), if it did not. */
  notHealed: string | null;
  /** The etcd members the fault killed (`etcd-member-kill`); empty for the other faults. */
  etcdKilled: string[];
}

export interface DbFaultOptions {
  /** How long a pause lasts, or how long Patroni stays dead, before it resumes (or a supervisor would restart it). */
  holdMs?: number;
  /** Called with progress lines. */
  say?: (line: string) => void;
  /** Runs while the fault holds (started once it is injected); awaited before the fault ends. */
  during?: () => Promise<void>;
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
  const proxies = withRole(cluster, 'proxy');
  const proxy = proxies[0]!;
  const runtimes = proxies.map((p) => labRuntime(p.name));
  const old = await waitFor('a primary', () => findPrimary(cluster), 60_000, 250);
  await waitFor('a synchronous standby', () => hasSyncStandby(cluster, old), 120_000, 250);
  const fencesBefore = await fenceLines(lab);
  const releasesBefore = await releaseLines(lab);
  const proxyLogFrom = (await readMachineLog(proxy.name, 'haproxy')).split('\n').length - 1;

  let mostUp = 0;
  let mostPrimariesUp = 0;
  let samples = 0;
  let sampling = true;
  // Set once the fault is injected, cleared when it ends: when the old primary's MAINT counts.
  let faultOn = false;
  const oldInMaint = new Set<string>();
  const dbs = new Map(withRole(cluster, 'db').map((m) => [m.name, m]));
  const sampler = (async () => {
    while (sampling) {
      const views = await Promise.all(runtimes.map((r) => r.servers(POSTGRES_BACKEND).catch(() => undefined)));
      for (const [i, servers] of views.entries()) {
        if (!servers) continue;
        samples++;
        if (faultOn && servers.some((s) => s.server === old.name && s.admin === 'maint')) oldInMaint.add(proxies[i]!.name);
        const up = servers.filter((s) => s.op === 'up' && s.admin === 'ready');
        mostUp = Math.max(mostUp, up.length);
        // Looked at only when it matters (more than one up): a file and the machine's PIDs each.
        if (up.length > 1) {
          const primaries = await Promise.all(up.map((s) => (dbs.has(s.server) ? runsAsPrimary(dbs.get(s.server)!) : false)));
          mostPrimariesUp = Math.max(mostPrimariesUp, primaries.filter(Boolean).length);
        } else mostPrimariesUp = Math.max(mostPrimariesUp, up.length);
      }
      await sleep(100);
    }
  })();

  const writer = new AckWriter({
    host: proxy.address,
    port: cluster.proxy.postgresPort,
    user: cluster.database.appUser,
    password: secrets.appDbPassword,
    database: cluster.database.appDatabase,
    intervalMs: 50,
  });
  try {
    await writer.prepare();
  } catch (err) {
    // The sampler would otherwise sample on forever and keep the process alive after the failure.
    sampling = false;
    await sampler;
    throw err;
  }
  writer.start();
  let t0 = 0;
  let t1 = 0;
  let notHealed: string | null = null;
  let staleAtEnd = false;
  try {
    const steadyFrom = performance.now();
    await waitFor('steady writes', async () => (writer.acked.filter((s) => s.atMs > steadyFrom).length >= 20 ? true : undefined), 60_000, 100);
    t0 = performance.now();
    say(`${fault}: on ${old.name}, for ${holdMs / 1000} s`);
    await inject(lab, old, fault, 'start');
    faultOn = true;
    await Promise.all([sleep(holdMs), o.during?.()]);
    t1 = performance.now();
    staleAtEnd = await runsAsPrimary(old);
    faultOn = false;
    await inject(lab, old, fault, 'end');
    say(`${fault}: ended on ${old.name}`);
    try {
      await waitFor(
        'the database tier whole again',
        async () => {
          const p = await findPrimary(cluster);
          if (!p || !(await hasSyncStandby(cluster, p).catch(() => undefined))) return undefined;
          return (await Promise.all(withRole(cluster, 'db').map(patroniRuns))).every(Boolean) ? true : undefined;
        },
        120_000,
        500,
      );
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
  const resumed = writer.resumedAfter(t0);
  // Which machine is primary once it is over: asked until one answers (a member whose REST API
  // misses one deadline under load is not a different primary; no primary at all is `notHealed`'s).
  const primaryAfter = (await waitFor('a primary after the fault', () => findPrimary(cluster), 20_000, 250).catch(() => undefined))?.name ?? null;
  const ackedInHold = writer.acked.filter((s) => s.atMs >= t0 && s.atMs <= t1).map((s) => s.atMs);
  const edges = [t0, ...ackedInHold, t1];
  return {
    fault,
    old: old.name,
    primaryAfter,
    backAfterMs: firstNew ? Math.round(firstNew.atMs - t0) : null,
    resumedAfterMs: resumed === null ? 0 : resumed ? Math.round(resumed.atMs - t0) : null,
    heldMs: holdMs,
    window: { fromMs: t0, toMs: t1 },
    acked: writer.acked.length,
    inHold: { acked: ackedInHold.length, failed: writer.failedAtMs.filter((t) => t >= t0 && t <= t1).length },
    longestGapInHoldMs: Math.round(Math.max(0, ...edges.slice(1).map((t, i) => t - edges[i]!))),
    missing: await writer.missing(),
    mostUp,
    mostPrimariesUp,
    samples,
    oldAcksAfterNew: firstNew ? writer.acked.filter((s) => s.atMs > firstNew.atMs && s.server === old.address).length : 0,
    staleAtEnd,
    fences: (await fenceLines(lab)) - fencesBefore,
    releases: (await releaseLines(lab)) - releasesBefore,
    oldInMaint: [...oldInMaint].sort(),
    proxies: proxies.map((p) => p.name),
    proxyLog: (await readMachineLog(proxy.name, 'haproxy'))
      .split('\n')
      .slice(proxyLogFrom)
      .filter((l) => l.includes(`Server ${POSTGRES_BACKEND}/`)),
    notHealed,
    etcdKilled: fault === 'etcd-member-kill' ? etcdKilled.map((m) => m.name) : [],
  };
}

/** The members `etcd-member-kill` killed, from its start to its end. */
let etcdKilled: Machine[] = [];

/** The machine etcd's raft leader runs on, as the members report it (`etcdctl endpoint status`, asked on each member's machine). */
export async function etcdLeader(lab: LabHandle): Promise<Machine | undefined> {
  const members = withRole(lab.cluster, 'etcd');
  for (const m of members) {
    const r = await new LabShell(m.name)
      .exec(
        [
          'etcdctl',
          ...etcdctlTlsFlags(m.name),
          `--endpoints=https://${m.address}:${ETCD_CLIENT_PORT}`,
          '--command-timeout=3s',
          'endpoint',
          'status',
          '-w',
          'json',
        ],
        {
          timeoutMs: 15_000,
        },
      )
      .catch(() => undefined);
    if (r?.code !== 0) continue;
    const [st] = JSON.parse(r.stdout) as { Status: { header: { member_id: number | string }; leader: number | string } }[];
    if (st && String(st.Status.header.member_id) === String(st.Status.leader)) return m;
    // This member follows: its leader is the member whose own status names itself; ask the others.
  }
  return undefined;
}

/** Until every etcd member answers `endpoint health` (a member that returned has caught up). */
async function etcdHealthy(lab: LabHandle): Promise<void> {
  const members = withRole(lab.cluster, 'etcd');
  const endpoints = members.map((m) => `https://${m.address}:${ETCD_CLIENT_PORT}`).join(',');
  await waitFor(
    'every etcd member healthy',
    async () => {
      const r = await new LabShell(members[0]!.name)
        .exec(['etcdctl', ...etcdctlTlsFlags(members[0]!.name), `--endpoints=${endpoints}`, '--command-timeout=3s', 'endpoint', 'health'], {
          timeoutMs: 20_000,
        })
        .catch(() => undefined);
      return r?.code === 0 ? true : undefined;
    },
    120_000,
    1000,
  );
}

async function inject(lab: LabHandle, m: Machine, fault: DbFault, phase: 'start' | 'end'): Promise<void> {
  const signal = phase === 'start' ? 'SIGSTOP' : 'SIGCONT';
  switch (fault) {
    case 'etcd-pause':
      for (const e of withRole(lab.cluster, 'etcd')) await signalProcesses(e.name, signal, 'etcd');
      return;
    case 'etcd-no-quorum': {
      // Every member but the last paused: the one left answers, but cannot commit or serve a linearizable read.
      const members = withRole(lab.cluster, 'etcd');
      if (members.length < 3) throw new Error(`etcd-no-quorum needs three etcd members or more; the lab has ${members.length}`);
      for (const e of members.slice(0, -1)) await signalProcesses(e.name, signal, 'etcd');
      return;
    }
    case 'etcd-member-kill': {
      const members = withRole(lab.cluster, 'etcd');
      if (members.length < 3) throw new Error(`etcd-member-kill needs three etcd members or more; the lab has ${members.length}`);
      if (phase === 'start') {
        const leader = (await etcdLeader(lab)) ?? members[0]!;
        etcdKilled = [leader, ...members.filter((e) => e.name !== leader.name)].slice(0, 1);
        for (const e of etcdKilled) {
          await failStarts(e.name, UNITS.etcd, true);
          if ((await signalProcesses(e.name, 'SIGKILL', 'etcd')) === 0) throw new Error(`etcd-member-kill: no etcd process on ${e.name}`);
        }
      } else {
        for (const e of etcdKilled) {
          await failStarts(e.name, UNITS.etcd, false);
          await labStart(e.name, 'etcd');
        }
        await etcdHealthy(lab);
      }
      return;
    }
    case 'etcd-port-cut':
      if (phase === 'start') for (const e of withRole(lab.cluster, 'etcd')) await labDropOutput(m.name, e.name, { port: ETCD_CLIENT_PORT });
      else await labUnblock(m.name);
      return;
    case 'agent-pause':
      await signalProcesses(m.name, signal, 'agent');
      return;
    case 'patroni-restart':
      if (phase === 'start') {
        // A clean stop: Patroni stops PostgreSQL, then releases its key; then started again, as Restart= would.
        await signalProcesses(m.name, 'SIGTERM', 'patroni');
        await waitFor(`Patroni on ${m.name} to stop`, async () => ((await patroniRuns(m)) ? undefined : true), 60_000, 100);
        await sleep(2000);
        await labStart(m.name, 'patroni');
      }
      return;
    case 'patroni-pause':
      await signalProcesses(m.name, signal, 'patroni');
      return;
    case 'postgres-pause':
      await signalProcesses(m.name, signal, 'postgres');
      return;
    case 'machine-pause':
      await signalProcesses(m.name, signal);
      return;
    case 'machine-kill':
      if (phase === 'start') await labKill(m.name);
      else await labRevive(m.name);
      return;
    case 'postgres-kill':
      // Patroni stays: it sees PostgreSQL gone and starts it again, or loses the lead meanwhile.
      if (phase === 'start') await signalProcesses(m.name, 'SIGKILL', 'postgres');
      return;
    case 'machine-silent':
      await inNetns(m.name, 'ip', ['link', 'set', 'eth0', phase === 'start' ? 'down' : 'up']);
      return;
    case 'etcd-cut':
      if (phase === 'start')
        await cutOff(
          m.name,
          withRole(lab.cluster, 'etcd')
            .filter((e) => e.name !== m.name)
            .map((e) => e.address),
          false,
        );
      else await healAll(m.name);
      return;
    case 'patroni-kill':
      // As a Patroni that crashed and whose restarts fail for a while (systemd's Restart= tries
      // every 2 s; a runtime drop-in makes each start fail), PostgreSQL left running; then a
      // start that works, unless the agent's fence has already had the unit restarted.
      if (phase === 'start') {
        await failStarts(m.name, UNITS.patroni, true);
        await signalProcesses(m.name, 'SIGKILL', 'patroni');
      } else {
        await failStarts(m.name, UNITS.patroni, false);
        if (!(await patroniRuns(m))) await labStart(m.name, 'patroni');
      }
      return;
  }
}

/** A runtime drop-in (gone at the next boot) whose ExecStartPre fails, so every start of the unit fails; removed again with `on` false. */
/** Makes `unit`'s starts on `host` fail (a runtime drop-in with `ExecStartPre=/bin/false`), or work again. */
export async function failStarts(host: string, unit: string, on: boolean): Promise<void> {
  const dropIn = `/run/systemd/system/${unit}.d/vigil-lab-fault.conf`;
  const script = on
    ? `mkdir -p "$(dirname "$1")" && printf '[Service]\\nExecStartPre=/bin/false\\n' > "$1" && systemctl daemon-reload`
    : 'rm -f "$1" && systemctl daemon-reload && systemctl reset-failed "$2" || true';
  const r = await new LabShell(host).exec(['sh', '-c', script, 'sh', dropIn, unit]);
  if (r.code !== 0) throw new Error(`${host}: ${on ? 'making' : 'letting'} ${unit}'s starts ${on ? 'fail' : 'work again'}: ${r.stderr.trim()}`);
}

async function patroniRuns(m: Machine): Promise<boolean> {
  return (await listProcesses(m.name)).some((p) => p.name === 'patroni');
}

/**
 * PostgreSQL runs on the machine (postmaster.pid names a process of its own) and not in recovery:
 * the agent's rule (db-processes.ts), read from this host through the machine's directory.
 */
async function runsAsPrimary(m: Machine): Promise<boolean> {
  const data = hostPathOf(m.name, PATHS.pgData);
  const pid = Number((await readFile(join(data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !(await netnsPids(m.name)).includes(pid)) return false;
  return !(await inRecoveryByFiles(data));
}

/** `db-fenced` lines in the db machines' agent logs. */
const fenceLines = (lab: LabHandle) => logLines(lab, 'db', 'agent', 'db-fenced');
/** `db-leader-released` lines in the observers' logs. */
const releaseLines = (lab: LabHandle) => logLines(lab, 'observer', 'observer', 'db-leader-released');

async function logLines(lab: LabHandle, role: 'db' | 'observer', log: string, event: string): Promise<number> {
  let n = 0;
  for (const m of withRole(lab.cluster, role)) {
    const text = await readMachineLog(m.name, log);
    n += text.split('\n').filter((l) => l.includes(`"event":"${event}"`)).length;
  }
  return n;
}
