/**
 * `vigil agent`: wires the agent core to etcd, the services, the local health check and the
 * mutual-TLS API, and runs until its signal aborts. Stopping the agent leaves the services as they
 * are (an agent upgrade must not cause an outage) until its lease runs out: then the dead-man
 * switch (src/render/deadman.ts) stops them, so an agent that stays down does not leave the
 * application running beside the machine activated in its place. A restart takes well under the
 * lease; apply pauses the proxy's role check of the active machine meanwhile.
 */
import { readFileSync } from 'node:fs';
import { readFile, stat, statfs } from 'node:fs/promises';
import { loadCluster } from '../config/load.ts';
import { PATHS, ROOTS } from '../layout/paths.ts';
import { withRole, type Cluster, type Machine } from '../config/schema.ts';
import { openStore, storeTls, type VigilStore } from '../etcd/store.ts';
import { EventLog } from '../events/log.ts';
import { type AgentStatus, type PatchDirState } from '../model/ha.ts';
import { AGENT_PORT } from '../layout/network.ts';
import { createMtlsServer } from '../mtls/mtls.ts';
import { loadPki } from '../pki/ca.ts';
import { etcdEndpoints } from '../layout/network.ts';
import { appHealthTarget } from '../layout/backend.ts';
import { httpOk } from '../util/net.ts';
import { VigilError, problem } from '../util/errors.ts';
import { bootClockCs, bootClockMs } from '../util/boot-clock.ts';
import { serialFile } from '../util/serial-file.ts';
import { Agent, type AgentMemory } from './agent.ts';
import { restartGrace, type GraceDeps } from './restart-grace.ts';
import type { ServingHold } from '../etcd/serving.ts';
import { agentOf } from './client.ts';
import type { PeerAnswer } from './ride-out.ts';
import { activationConfig, activationHook } from './activation.ts';
import { FENCE_TICK_MS, startDbFence, type DbFenceParts } from './db-fence-setup.ts';
import { agentHandler, ReadyRefused, type ProxyControl } from './api.ts';
import { HaproxyRuntime } from '../proxy/runtime.ts';
import { APP_BACKEND, POSTGRES_BACKEND } from '../layout/network.ts';
import { PatroniError, patroniOf, type PatroniClient } from '../patroni/client.ts';
import { SystemdServices } from './services.ts';
import type { AgentView, FileSync } from '../sync/service.ts';
import { serveMetrics } from '../metrics/serve.ts';
import { certificateExpiry, watchedCertificates } from '../metrics/registry.ts';
import { AgentMetrics } from './metrics.ts';

export interface AgentOptions {
  clusterFile: string;
  node: string;
  tickMs?: number;
  signal: AbortSignal;
}

/** The agent's metrics count its log events (src/agent/metrics.ts); set once metrics are made. */
let countLog: ((event: string, fields: Record<string, unknown>) => void) | undefined;

const log = (event: string, fields: Record<string, unknown> = {}) => {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), event, ...fields })}\n`);
  try {
    countLog?.(event, fields);
  } catch {
    // metrics never stop the agent: a count lost is all a failure here costs
  }
};

export async function runAgent(o: AgentOptions): Promise<void> {
  const cluster = await loadCluster(o.clusterFile);
  const machine = cluster.machines.find((m) => m.name === o.node);
  if (!machine)
    throw new VigilError('USAGE', [problem(o.clusterFile, `no machine named ${o.node}`, `use one of ${cluster.machines.map((m) => m.name).join(', ')}`)]);
  const pki = await loadPki(PATHS.pkiDir, o.node);
  const store = await openStore({ endpoints: etcdEndpoints(cluster), cluster: cluster.cluster.name, dialTimeoutMs: 60_000, tls: storeTls(pki) });
  const services = machine.roles.includes('app') ? new SystemdServices(cluster.application.services) : undefined;
  // Through nginx, as HAProxy's traffic goes: over TLS with the certificate checked when application.backendTls says so.
  const health = appHealthTarget(cluster, o.node, '127.0.0.1');
  const events = new EventLog(store.events, { file: `${ROOTS.log}/events.jsonl` });
  const sync = machine.roles.includes('app') ? await startFileSync(cluster, o.node, events) : undefined;
  // The claim's lease outlives the agent's own count of its confirmation (src/etcd/serving.ts).
  let leaseTimer: NodeJS.Timeout | undefined;
  const hold = services ? store.servingHold(o.node, Math.ceil(cluster.timers.agentLeaseMs / 1000)) : undefined;
  // The other app machines: asked when etcd does not answer (ride-out.ts).
  const peers = services ? withRole(cluster, 'app').filter((m) => m.name !== o.node) : [];
  const agent: Agent = new Agent(
    {
      node: o.node,
      confirm: async () => {
        const sentAtMs = performance.now();
        const [confirmed] = await Promise.all([store.confirmActive(1000), hold?.renew(1000)]);
        return { ...confirmed, sentAtMs };
      },
      ...(hold
        ? {
            hold: {
              get claimed() {
                return hold.claimed;
              },
              claim: (epoch: number) => hold.claim(epoch, 1000),
              release: () => hold.release(1000),
            },
          }
        : {}),
      services,
      ...(services && cluster.application.activation ? { activation: activationHook(activationConfig(cluster.application.activation)) } : {}),
      appHealth: () => httpOk(health.url, 1000, 'GET', health.tls),
      serviceReady: async (name) => {
        const url = cluster.application.services.find((s) => s.name === name)?.healthUrl;
        return url === undefined ? undefined : httpOk(url, 500);
      },
      beforeStart: async () => {
        await sync?.update(agentView(agent));
        await sync?.beforeActivate();
      },
      // The accept file carries the confirmation the cycle just made.
      afterCycle: async () => {
        if (services) await stampLease(agent).catch((err: unknown) => log('lease-stamp-failed', { error: String(err) }));
        // Stop the services the moment the lease runs out, even if the next cycle hangs on etcd.
        clearTimeout(leaseTimer);
        if (services && agent.isActive())
          leaseTimer = setTimeout(
            () =>
              void agent
                .leaseEnded()
                .then(() => stampLease(agent))
                .catch((err: unknown) => log('self-fence-failed', { error: String(err) })),
            agent.leaseLeftMs() + 1,
          );
        await sync?.update(agentView(agent)).catch((err: unknown) => void log('sync-update-failed', { error: String(err) }));
        // Waiting for the machine it replaces to stop: look again soon, not at the next tick.
        if (agent.waitingFor.length > 0 && !o.signal.aborted) setTimeout(() => void agent.tick(), HANDOVER_POLL_MS).unref();
      },
      ...(services
        ? {
            rideOut: {
              peers: peers.map((m) => m.name),
              ask: (epoch: number) =>
                Promise.all(
                  peers.map((m) =>
                    agentOf(pki, m)
                      .rideOut(o.node, epoch, { timeoutMs: RIDE_OUT_ASK_MS })
                      .then(
                        (a): PeerAnswer => ({ peer: m.name, ...a }),
                        (err: unknown): PeerAnswer => ({ peer: m.name, granted: false, reason: err instanceof Error ? err.message : String(err) }),
                      ),
                  ),
                ),
            },
          }
        : {}),
      now: () => performance.now(),
      log,
      remember,
    },
    { leaseMs: cluster.timers.agentLeaseMs },
    await recall(),
  );
  const patches = machine.roles.includes('app') && cluster.application.patchDir ? await patchDirCheck(cluster.application.patchDir) : undefined;
  // Its own member's REST API, over TLS with this machine's certificate (src/render/patroni.ts).
  const patroni = machine.roles.includes('db') ? patroniOf(cluster, machine, { identity: pki }) : undefined;
  const fence = patroni ? await startDbFence({ cluster, machine, store, events, log, patroni }) : undefined;
  const metrics = cluster.metrics.enabled ? agentMetrics(agent, cluster, machine, patroni, sync) : undefined;
  countLog = metrics && ((event, fields) => metrics.fromLog(event, fields));
  if (metrics) certificateExpiry(metrics.m, watchedCertificates(cluster, machine, pki));
  const metricsServer = metrics ? await serveMetrics({ cluster, machine, port: cluster.metrics.agentPort, registry: metrics.m.registry, pki, log }) : null;
  const watch = await store.watchActive((r) => agent.hint(r), { onError: (err) => log('watch-error', { error: err.message }) });
  const observers = new Set([...withRole(cluster, 'observer').map((m) => m.name), 'admin']);
  const server = await createMtlsServer({
    ca: pki.ca,
    cert: pki.cert,
    key: pki.key,
    host: machine.address,
    port: AGENT_PORT,
    handler: agentHandler({
      status: () => status(agent, cluster, machine, patroni, sync, fence, patches),
      roleOk: () => agent.roleCheck(),
      fence: (e) => agent.fence(e),
      writers: observers,
      ...(services ? { rideOut: { grant: (req) => agent.grantRideOut(req), askers: new Set(peers.map((m) => m.name)) } } : {}),
      ...(machine.roles.includes('proxy') ? { proxy: proxyControl(store) } : {}),
    }),
    onHandlerError: (err) => log('api-error', { error: String(err) }),
  });
  log('agent-started', {
    node: o.node,
    address: machine.address,
    port: AGENT_PORT,
    services: services ? 'app' : 'none',
    dbFence: fence !== undefined,
    patroniGate: fence?.gate !== undefined,
  });
  const timer = setInterval(() => void agent.tick(), o.tickMs ?? 500);
  const fenceTimer = fence && setInterval(() => void fence.fence.tick(), FENCE_TICK_MS);
  await agent.tick();
  await new Promise<void>((resolve) => o.signal.addEventListener('abort', () => resolve(), { once: true }));
  clearInterval(timer);
  clearInterval(fenceTimer);
  clearTimeout(leaseTimer);
  const stopping = performance.now();
  // The API and the watch first: after them nothing starts a cycle (a fence, a hint), so the
  // cycle under way is the last one. The services keep running whatever happens here.
  const unfinished = await stopSteps([
    ['api', () => server.close()],
    ['metrics', async () => metricsServer?.close()],
    ['watch', () => watch.close()],
    ['cycle', () => agent.settled()],
    ['db-fence', async () => fence?.fence.settled()],
    // Apply restarts this agent on purpose: the application stays up until the new one confirms (./restart-grace.ts).
    ['restart-grace', async () => hold && (await restartGrace(graceDeps(agent, hold)))],
    // A clean stop frees Patroni's ways: no lease is left to run out behind the agent.
    ['patroni-gate', async () => fence?.gate?.remove()],
    ['sync', async () => sync?.close()],
    ['etcd', () => store.close()],
  ]);
  log('agent-stopped', { node: o.node, ms: Math.round(performance.now() - stopping), ...(unfinished.length ? { unfinished } : {}) });
}

/** Where the agent keeps its memory (AgentMemory) across restarts. */
const MEMORY_FILE = `${ROOTS.data}/agent-memory.json`;

/** Stores the memory; a fence and a cycle may store it at once (util/serial-file.ts). */
const writeMemory = serialFile(MEMORY_FILE);
/** The promise's end goes to disk on the boot clock (performance.now() restarts with the process; the boot clock only with the machine). */
const remember = (m: AgentMemory): Promise<void> => {
  const { promisedUntilMs, ...rest } = m;
  const promise =
    promisedUntilMs === undefined ? {} : { promisedUntilBootMs: Math.ceil(bootClockMs() + (promisedUntilMs - performance.now())), bootId: bootId() };
  return writeMemory(`${JSON.stringify({ ...rest, ...promise })}\n`);
};

/** This boot of the machine (the kernel's random boot id): a boot clock reading means nothing under another. */
const bootId = (): string => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

/** How long an active agent waits for each peer's answer to a ride-out request; well inside the lease. */
const RIDE_OUT_ASK_MS = 1000;

/** The memory a previous run stored; none (a new machine) or an unreadable file starts from zero, logged. */
async function recall(): Promise<AgentMemory> {
  const none: AgentMemory = { highestEpoch: 0, fencedBelow: 0 };
  const text = await readFile(MEMORY_FILE, 'utf8').catch(() => null);
  if (text === null) return none;
  try {
    const m = JSON.parse(text) as Partial<AgentMemory> & { promisedUntilBootMs?: unknown; bootId?: unknown };
    const n = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);
    // A promise given to a peer riding out an etcd outage holds across an agent restart; not
    // across a reboot (the boot clock starts again, and a reboot outlasts a lease).
    const left = m.bootId === bootId() ? n(m.promisedUntilBootMs) - bootClockMs() : 0;
    return { highestEpoch: n(m.highestEpoch), fencedBelow: n(m.fencedBelow), ...(left > 0 ? { promisedUntilMs: performance.now() + left } : {}) };
  } catch (err) {
    log('memory-unreadable', { file: MEMORY_FILE, error: String(err) });
    return none;
  }
}

/** The cycle and the lease's end both stamp; one write at a time (util/serial-file.ts). */
const writeServeUntil = serialFile(PATHS.serveUntil);

/**
 * Tells the dead-man switch (src/render/deadman.ts) until when this machine may serve: the boot
 * clock (centiseconds of /proc/uptime) at which the lease runs out, or 0 when it does not serve.
 * The uptime is read before the lease is measured, so the stamp never runs past the lease.
 */
async function stampLease(agent: Agent): Promise<void> {
  const uptime = await readFile('/proc/uptime', 'utf8');
  const until = agent.isActive() ? bootClockCs(uptime) + Math.floor(agent.leaseLeftMs() / 10) : 0;
  await writeServeUntil(`${until}\n`);
}

function graceDeps(agent: Agent, hold: ServingHold): GraceDeps {
  return {
    markAgeMs: async () => {
      const mark = await stat(PATHS.agentRestartMark).catch(() => null);
      return mark && Date.now() - mark.mtimeMs;
    },
    active: () => agent.isActive(),
    bootClockCs: async () => bootClockCs(await readFile('/proc/uptime', 'utf8')),
    extendClaim: (ttlSeconds) => hold.extend(ttlSeconds, 1000),
    stamp: (untilCs) => writeServeUntil(`${untilCs}\n`),
    log,
  };
}

/** How often an activated agent looks whether the machine it replaces has dropped its claim. */
const HANDOVER_POLL_MS = 100;

/** A step of the shutdown may take this long before it is given up on (and the next one runs). */
const STOP_STEP_MS = 3000;
/** The whole shutdown is bounded so: systemd kills the agent at TimeoutStopSec=10. */
const STOP_TOTAL_MS = 5000;

/**
 * Runs the shutdown's steps in order, none for longer than STOP_STEP_MS and all of them within
 * STOP_TOTAL_MS: one that hangs is logged and left behind, and the agent exits all the same (the
 * CLI ends the process if what is left behind keeps it alive). Returns the steps left unfinished.
 */
export async function stopSteps(
  steps: [string, () => Promise<unknown>][],
  limits = { stepMs: STOP_STEP_MS, totalMs: STOP_TOTAL_MS },
  say: (event: string, fields?: Record<string, unknown>) => void = log,
): Promise<string[]> {
  const deadline = performance.now() + limits.totalMs;
  const unfinished: string[] = [];
  for (const [step, run] of steps) {
    const started = performance.now();
    const budget = Math.max(0, Math.min(limits.stepMs, deadline - started));
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.resolve()
        .then(run)
        .then(
          () => true,
          (err: unknown) => {
            say('agent-stop-failed', { step, error: String(err) });
            return true;
          },
        ),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), budget))),
    ]);
    clearTimeout(timer);
    if (!finished) {
      say('agent-stop-slow', { step, waitedMs: Math.round(performance.now() - started) });
      unfinished.push(step);
    }
  }
  return unfinished;
}

async function startFileSync(cluster: Cluster, node: string, events: EventLog): Promise<FileSync> {
  const { FileSync } = await import('../sync/service.ts');
  const sync = new FileSync({ node, cluster, log, event: (e) => events.append(e, { timeoutMs: 2000 }) });
  await sync.start();
  return sync;
}

/** What file sync needs of the agent's state; the confirmation time on the boot clock, which this machine's receivers compare with theirs. */
function agentView(agent: Agent): AgentView {
  const confirmedAtBootMs = agent.confirmedAt === null ? null : bootClockMs() - Math.ceil(performance.now() - agent.confirmedAt);
  return { record: agent.record, confirmedAtBootMs, active: agent.isActive() };
}

/** The air-gap set this app machine holds (src/airgap/check.ts), checked in the background at most every 2 s. */
async function patchDirCheck(dir: string): Promise<() => PatchDirState | undefined> {
  const { PatchDirChecker, throttledCheck } = await import('../airgap/check.ts');
  const { PARTIAL_DIR } = await import('../sync/protocol.ts');
  return throttledCheck(new PatchDirChecker(dir, [PARTIAL_DIR]));
}

async function status(
  agent: Agent,
  cluster: Cluster,
  machine: Machine,
  patroni: PatroniClient | undefined,
  sync?: FileSync,
  fence?: DbFenceParts,
  patches?: () => PatchDirState | undefined,
): Promise<AgentStatus> {
  const s: AgentStatus = {
    node: machine.name,
    active: agent.isActive(),
    epoch: agent.record?.epoch ?? null,
    highestEpoch: agent.highestEpoch,
    confirmedAgoMs: agent.confirmedAt === null ? null : Math.round(performance.now() - agent.confirmedAt),
    appHealthy: agent.appHealthy,
    ready: agent.confirmedAt !== null && performance.now() - agent.confirmedAt < cluster.timers.agentLeaseMs,
    services: agent.services,
    ...(machine.roles.includes('app') ? { waitingFor: agent.waitingFor } : {}),
    ...(machine.roles.includes('app') && !agent.isActive() ? { inactiveReason: agent.whyNotActive() ?? undefined } : {}),
    disk: [],
  };
  if (patroni) s.patroni = await patroniState(patroni, machine);
  if (fence)
    s.dbFence = { patroniVersion: fence.patroniVersion, patroniGate: fence.gate !== undefined, fences: fence.fence.fences, lastReason: fence.fence.lastReason };
  if (sync) s.sync = sync.status(agentView(agent));
  const airgap = patches?.();
  if (airgap) s.airgap = airgap;
  for (const path of [ROOTS.data]) {
    const fs = await statfs(path).catch(() => undefined);
    if (fs) s.disk.push({ path, freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize });
  }
  return s;
}

/** The agent's metrics, read from its memory when scraped (src/agent/metrics.ts). */
function agentMetrics(agent: Agent, cluster: Cluster, machine: Machine, patroni: PatroniClient | undefined, sync?: FileSync): AgentMetrics {
  const wallMs = (monotonicMs: number) => Date.now() - (performance.now() - monotonicMs);
  return new AgentMetrics({
    ...(machine.roles.includes('app') ? { role: () => (agent.isActive() ? 'active' : agent.record?.node === machine.name ? 'starting' : 'standby') } : {}),
    epoch: () => agent.record?.epoch ?? null,
    leaseExpiryMs: () => (agent.isActive() ? Date.now() + agent.leaseLeftMs() : null),
    lastConfirmMs: () => (agent.confirmedAt === null ? null : wallMs(agent.confirmedAt)),
    ...(sync ? { sync: () => sync.status(agentView(agent)) } : {}),
    ...(patroni ? { replication: () => replicationLag(patroni, machine) } : {}),
  });
}

/**
 * This standby's lag behind the primary: bytes from Patroni's /cluster; seconds since the commit
 * of the last transaction it replayed, 0 when no byte is missing (an idle primary commits
 * nothing, so the age alone would grow without any lag). Null on the primary.
 */
async function replicationLag(
  patroni: PatroniClient,
  machine: Machine,
): Promise<{ member: string; lagBytes: number | null; lagSeconds: number | null } | null> {
  const me = (await patroni.cluster({ timeoutMs: 1000 })).members.find((m) => m.name === machine.name);
  if (!me || ['leader', 'master', 'primary', 'standby_leader'].includes(me.role)) return null;
  const lagBytes = typeof me.lag === 'number' ? me.lag : null;
  if (lagBytes === 0) return { member: me.name, lagBytes, lagSeconds: 0 };
  const replayedAt = (await patroni.status({ timeoutMs: 1000 })).replayedAt;
  const lagSeconds = replayedAt === undefined ? null : Math.max(0, (Date.now() - Date.parse(replayedAt)) / 1000);
  return { member: me.name, lagBytes, lagSeconds: Number.isFinite(lagSeconds) ? lagSeconds : null };
}

/** This machine's member in Patroni's view of the cluster: role, state and replication lag. */
async function patroniState(patroni: PatroniClient, machine: Machine): Promise<AgentStatus['patroni']> {
  try {
    const view = await patroni.cluster({ timeoutMs: 1000 });
    const me = view.members.find((m) => m.name === machine.name);
    if (!me) return { role: 'unknown', state: 'not a member', lagBytes: null };
    return { role: me.role, state: me.state, lagBytes: typeof me.lag === 'number' ? me.lag : null };
  } catch (err) {
    return { role: 'unknown', state: `Patroni REST API unreachable: ${patroniReason(err)}`, lagBytes: null };
  }
}

/** The reason alone (a PatroniError's first problem), for a one-line status. */
function patroniReason(err: unknown): string {
  return err instanceof PatroniError ? err.problems[0]!.message : (err as Error).message;
}

/**
 * This machine's HAProxy for the observers (src/agent/api.ts): MAINT whenever asked; READY and UP
 * only for the machine etcd's active record names at the epoch given, read now from etcd.
 */
function proxyControl(store: VigilStore): ProxyControl {
  const runtime = new HaproxyRuntime();
  const named = async (server: string, epoch: number): Promise<void> => {
    const rec = (await store.getActive({ timeoutMs: 1000 }))?.record;
    if (!rec || rec.node !== server || rec.epoch !== epoch)
      throw new ReadyRefused(`the active record is ${rec ? `${rec.node} at epoch ${rec.epoch}` : 'absent'}, not ${server} at epoch ${epoch}`);
  };
  return {
    servers: () => runtime.servers(APP_BACKEND),
    maint: (server) => runtime.maint(APP_BACKEND, server),
    db: {
      servers: () => runtime.servers(POSTGRES_BACKEND),
      maint: (server) => runtime.maint(POSTGRES_BACKEND, server),
      ready: (server) => runtime.readyWhenChecked(POSTGRES_BACKEND, server),
    },
    ready: async (server, epoch) => {
      await named(server, epoch);
      await runtime.readyWhenChecked(APP_BACKEND, server); // down until its role check passes (src/observer/proxies.ts)
    },
    up: async (server, epoch) => {
      await named(server, epoch);
      await runtime.healthUp(APP_BACKEND, server);
    },
  };
}
