/**
 * The stale-primary fence of a db machine, put together for the agent daemon (db-fence.ts):
 * Patroni's keys from etcd, Patroni's liveness from its REST API, PostgreSQL's state from its data
 * directory, the processes to end (systemd's unit), and the Patroni gate where the local
 * Patroni's version needs it (patroni-gate.ts).
 */
import type { Cluster, Machine } from '../config/schema.ts';
import type { VigilStore } from '../etcd/store.ts';
import type { EventLog } from '../events/log.ts';
import { PATRONI_LEADER_TXN, overwritesLeaderKey, parsePatroniVersion } from '../patroni/versions.ts';
import type { PatroniClient } from '../patroni/client.ts';
import { ETCD_CLIENT_PORT } from '../layout/network.ts';
import { BINARIES } from '../layout/units.ts';
import { run } from '../util/exec.ts';
import { DbFence } from './db-fence.ts';
import { SystemdDatabase, postgresState } from './db-processes.ts';
import { PatroniGate } from './patroni-gate.ts';

type Log = (event: string, fields?: Record<string, unknown>) => void;

/** How often a db machine's agent looks for a stale primary. */
export const FENCE_TICK_MS = 500;

export interface DbFenceParts {
  fence: DbFence;
  gate?: PatroniGate;
  /** As `patroni --version` gave it; null when it could not be read. */
  patroniVersion: string | null;
}

export interface DbFenceSetup {
  cluster: Cluster;
  machine: Machine;
  store: VigilStore;
  events: EventLog;
  log: Log;
  /** Its own member's REST API (over TLS with the machine's certificate). */
  patroni: PatroniClient;
}

/** Reads the local Patroni's version, installs the gate where it is needed, and returns the fence (not yet ticking). */
export async function startDbFence({ cluster, machine, store, events, log, patroni }: DbFenceSetup): Promise<DbFenceParts> {
  const processes = new SystemdDatabase();
  const t = cluster.timers;
  const version = await patroniVersion(log);
  const gate = overwritesLeaderKey(version)
    ? await patroniGate(cluster, version, log, t.ttlSeconds * 1000 - t.loopWaitSeconds * 1000 - GATE_MARGIN_MS)
    : undefined;
  if (!gate) log('db-fence', { patroniVersion: version.join('.') || 'unknown', patroniGate: false });
  const fence = new DbFence(
    {
      node: machine.name,
      readPatroni: () => store.readPatroni(cluster.cluster.name, 1000),
      patroniLive: () => patroni.check('liveness', { timeoutMs: 1000 }),
      postgres: () => postgresState(),
      kill: () => processes.kill(),
      fenced: (reason, killed) => {
        log('db-fenced', { reason, killed });
        void events
          .append(
            {
              type: 'primary-fenced',
              node: machine.name,
              message: `${machine.name}: ${reason}; ended ${killed.join(', ') || 'nothing (already gone)'}`,
              details: { killed },
            },
            { timeoutMs: 2000 },
          )
          .catch((err: unknown) => log('event-append-failed', { error: String(err) }));
      },
      ...(gate ? { gate } : {}),
      now: () => performance.now(),
      wallNow: () => Date.now(),
      log,
    },
    // An observation older than a fence tick plus the read's own deadline means the agent was held up.
    { ttlMs: t.ttlSeconds * 1000, maxAgeMs: 1500, renewEveryMs: GATE_RENEW_MS },
  );
  return { fence, ...(gate ? { gate } : {}), patroniVersion: version.length ? version.join('.') : null };
}

/** The local Patroni's version from `patroni --version`; [] when it cannot be read. */
async function patroniVersion(log: Log): Promise<number[]> {
  const r = await run(BINARIES.patroni, ['--version'], { allowFail: true, timeoutMs: 30_000 }).catch((err: unknown) => ({ stdout: '', stderr: String(err) }));
  const v = parsePatroniVersion(r.stdout);
  if (!v.length) log('patroni-version-unknown', { output: `${r.stdout}${r.stderr}`.trim().slice(0, 200) });
  return v;
}

/** The gate's lease ends this long before another member could have taken the leader key. */
const GATE_MARGIN_MS = 500;
/** How often the gate is renewed (an nft call); well within its lease. */
const GATE_RENEW_MS = 2000;

/**
 * The Patroni gate (patroni-gate.ts), for a local Patroni that overwrites a new leader's key;
 * undefined when it cannot be installed (logged: the fence still covers a paused or dead Patroni
 * or PostgreSQL, not a stall of the whole machine).
 */
async function patroniGate(cluster: Cluster, version: number[], log: Log, leaseMs: number): Promise<PatroniGate | undefined> {
  const gate = new PatroniGate({ user: 'postgres', etcdPort: ETCD_CLIENT_PORT, restPort: cluster.database.patroniPort, leaseMs });
  try {
    await gate.renew();
  } catch (err) {
    log('patroni-gate-unavailable', { patroniVersion: version.join('.'), error: String(err) });
    return undefined;
  }
  log('db-fence', {
    patroniVersion: version.join('.'),
    patroniGate: true,
    leaseMs,
    why: `Patroni before ${PATRONI_LEADER_TXN} can overwrite a new leader's key after a pause`,
  });
  return gate;
}
