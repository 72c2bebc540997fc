/**
 * The services step of `vigil apply`, tier by tier: etcd (healthy), Patroni (a primary), HAProxy,
 * the application's role and database on the primary, a synchronous standby, the agents, the
 * observer; then the application answering through the proxy. Units are enabled and started on
 * every machine of a tier at once; restarts that would interrupt service (etcd members, agents)
 * go one machine at a time.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { agentMachines, entryAddress, withRole } from '../config/schema.ts';
import { runsKeepalived } from '../render/keepalived.ts';
import { appDbDifferences, ensureAppDb, readAppDbState } from './appdb.ts';
import type { RemoteShell } from '../remote/types.ts';
import { APP_BACKEND, ETCD_CLIENT_PORT } from '../layout/network.ts';
import { PATHS, ROOTS } from '../layout/paths.ts';
import { UNITS } from '../layout/units.ts';
import { VigilError, problem } from '../util/errors.ts';
import { waitFor } from '../util/exec.ts';
import { daemonUnits } from './desired.ts';
import { agentRole, agentWhyNotServing, machineGet, remoteGet, remotePatroni, remoteRuntime, systemctl, unitStates } from './remote.ts';
import { PatroniError, patroniOf } from '../patroni/client.ts';
import { eachMachine, step, type ApplyStep, type Run } from './run.ts';

/** A machine with Vigil's artifact (an observer, else an agent's machine), to make HTTP checks from. */
function probeMachine(cluster: Cluster): Machine {
  return withRole(cluster, 'observer')[0] ?? cluster.machines.find((m) => daemonUnits(cluster, m).length > 0) ?? cluster.machines[0]!;
}

/** The probe machine and its shell: HTTP checks with its own certificate (etcd asks for one). */
interface Probe {
  machine: Machine;
  shell: RemoteShell;
}

/** GET `path` from etcd member `m`'s client port, asked on the probe machine with its certificate. */
const etcdGet = (probe: Probe, m: Machine, path: string) => machineGet(probe.shell, probe.machine, `https://${m.address}:${ETCD_CLIENT_PORT}${path}`);

/**
 * A restart that must not take a whole tier down at once: one machine at a time, in `order`,
 * each through `restart`, which returns once the machine serves again.
 */
interface Rolling {
  order?: (machines: Machine[]) => Promise<Machine[]>;
  restart: (m: Machine) => Promise<void>;
  /** Runs the restarts (when there are some to make), e.g. with something held for their duration. */
  around?: (restarts: () => Promise<void>) => Promise<void>;
}

/**
 * One tier's units on its machines: enabled, running, and restarted or reloaded when a file they
 * read changed. Starting and reloading happen on every machine at once (a new etcd cluster needs
 * its members up together); restarts too, unless `rolling` says how to take them one by one.
 */
async function converge(run: Run, sh: (m: Machine) => RemoteShell, machines: Machine[], unit: string, rolling?: Rolling): Promise<void> {
  const restarts: Machine[] = [];
  const restart = (m: Machine, how = '') => {
    run.change(m.name, 'services', `restart ${unit} (its files changed${how})`);
    return run.o.dryRun ? Promise.resolve() : rolling ? rolling.restart(m) : systemctl(sh(m), ['restart', unit]);
  };
  await eachMachine(machines, async (m) =>
    step(m.name, 'services', async () => {
      const shell = sh(m);
      const s = (await unitStates(shell, [unit])).get(unit)!;
      const asked = (run.pending.get(m.name) ?? []).filter((a) => a.unit === unit);
      if (!s.enabled) {
        run.change(m.name, 'services', `enable ${unit} (started at boot)`);
        if (!run.o.dryRun) await systemctl(shell, ['enable', unit]);
      }
      if (!s.active) {
        run.change(m.name, 'services', `start ${unit}`);
        if (!run.o.dryRun) await systemctl(shell, ['start', unit]);
      } else if (asked.some((a) => a.action === 'restart' || a.action === 'try-restart')) {
        if (rolling && machines.length > 1) restarts.push(m);
        else await restart(m);
      } else if (asked.some((a) => a.action === 'reload' || a.action === 'try-reload')) {
        run.change(m.name, 'services', `reload ${unit} (its configuration changed)`);
        if (!run.o.dryRun) await systemctl(shell, ['reload', unit]);
      }
    }),
  );
  const ordered = rolling?.order && restarts.length > 1 && !run.o.dryRun ? await rolling.order(restarts) : restarts;
  const restartAll = async () => {
    for (const m of ordered) await step(m.name, 'services', () => restart(m, '; one machine at a time'));
  };
  if (rolling?.around && ordered.length > 0 && !run.o.dryRun) await rolling.around(restartAll);
  else await restartAll();
}

/**
 * etcd members restart one at a time, each healthy again before the next: the cluster keeps its
 * quorum. The leader goes last: restarting a follower costs no election, so the cluster goes
 * without a leader once at most (about one election timeout, 1 s), not once per restart. Several
 * elections in a row can add up past what Patroni (retry_timeout) and the agents (their lease)
 * ride out, and the application stops answering while they last.
 */
function etcdRolling(run: Run, sh: (m: Machine) => RemoteShell, probeAt: Probe, waitMs: number): Rolling {
  const probe = probeAt.shell;
  // etcd's own gauge on its client port: 1 on the member that leads, 0 on the others.
  const leads = async (m: Machine) => /^etcd_server_is_leader 1$/m.test((await etcdGet(probeAt, m, '/metrics')).body);
  return {
    around: (restarts) => withPatroniPaused(run, sh, probe, restarts),
    order: async (ms) => {
      const leader = await Promise.all(ms.map(leads));
      return [...ms].sort((a, b) => Number(leader[ms.indexOf(a)]) - Number(leader[ms.indexOf(b)]));
    },
    restart: async (m) => {
      await systemctl(sh(m), ['restart', UNITS.etcd]);
      await waitUntil(`${m.name}'s etcd member healthy again`, m.name, waitMs, `read ${m.name}'s etcd log (\`journalctl -u ${UNITS.etcd}\`)`, async () =>
        (await etcdGet(probeAt, m, '/health')).status === 200 ? true : undefined,
      );
    },
  };
}

/** On the db machine where apply paused Patroni: its pause, to be undone by this or the next apply. */
const APPLY_PAUSE_MARK = `${ROOTS.data}/apply-paused-patroni`;

/** `patronictl pause|resume --wait` on `m`, as root with Patroni's own configuration. */
async function patronictl(sh: (m: Machine) => RemoteShell, m: Machine, verb: 'pause' | 'resume'): Promise<void> {
  const r = await sh(m).exec(['patronictl', '-c', PATHS.patroniConfig, verb, '--wait'], { timeoutMs: 60_000 });
  if (r.code !== 0)
    throw new VigilError('REMOTE_COMMAND', [
      problem(
        `${m.name} Patroni`,
        `\`patronictl ${verb}\` failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`,
        verb === 'resume'
          ? `run \`patronictl -c ${PATHS.patroniConfig} resume\` on ${m.name}: Patroni fails nothing over while it is paused`
          : `read \`patronictl -c ${PATHS.patroniConfig} list\` on ${m.name}, fix the cause and run \`vigil apply\` again`,
      ),
    ]);
}

/**
 * Patroni paused while etcd members restart. A primary whose leader-key update fails (its etcd
 * member stopping in the middle of the request: "error reading from server: EOF") demotes itself
 * at once, unless Patroni is paused (Patroni's ha.py: "continue to run as primary after failing to
 * update leader lock in DCS"): seen in the lab, one rolling restart in about ten bounced the
 * primary, and the application with it. Paused, Patroni fails nothing over either, for the
 * seconds the restarts take. A pause that was there before (the operator's) is left alone. Apply's
 * own is marked on the machine, so that an apply interrupted before resuming is undone by the next
 * (`resumeInterruptedPause`).
 */
async function withPatroniPaused(run: Run, sh: (m: Machine) => RemoteShell, probe: RemoteShell, restarts: () => Promise<void>): Promise<void> {
  const { cluster } = run.o;
  let on: Machine | undefined;
  for (const m of withRole(cluster, 'db')) {
    const view = await unlessSilent(patroniOf(cluster, m, { transport: remotePatroni(probe) }).cluster({ timeoutMs: 3000 }), undefined);
    if (!view) continue;
    if (view.paused) {
      run.note(m.name, 'services', 'Patroni is paused already (not by apply): left so while the etcd members restart');
      return restarts();
    }
    on = m;
    break;
  }
  if (!on) return restarts(); // no Patroni answers: no primary to keep
  const m = on;
  run.note(m.name, 'services', 'Patroni paused while etcd members restart (a primary that cannot renew its leader key demotes itself unless paused)');
  await sh(m).writeFile(APPLY_PAUSE_MARK, `${new Date().toISOString()}\n`, { mode: 0o600 });
  await patronictl(sh, m, 'pause');
  try {
    await restarts();
  } finally {
    await patronictl(sh, m, 'resume');
    await sh(m).exec(['rm', '-f', APPLY_PAUSE_MARK]);
    run.note(m.name, 'services', 'Patroni resumed');
  }
}

/**
 * A pause of Patroni that an interrupted apply left behind (its mark on a db machine) is undone.
 * A mark without a pause (the pause itself failed, or an operator resumed) is only removed:
 * `patronictl resume` refuses a cluster that is not paused.
 */
async function resumeInterruptedPause(run: Run, sh: (m: Machine) => RemoteShell, probe: RemoteShell): Promise<void> {
  const { cluster } = run.o;
  await eachMachine(withRole(cluster, 'db'), async (m) =>
    step(m.name, 'services', async () => {
      if ((await sh(m).readFile(APPLY_PAUSE_MARK)) === null) return;
      const view = await unlessSilent(patroniOf(cluster, m, { transport: remotePatroni(probe) }).cluster({ timeoutMs: 3000 }), undefined);
      if (view?.paused) {
        run.change(m.name, 'services', 'resume Patroni (an interrupted apply left it paused)');
        if (run.o.dryRun) return;
        await patronictl(sh, m, 'resume');
      }
      if (!run.o.dryRun) await sh(m).exec(['rm', '-f', APPLY_PAUSE_MARK]);
    }),
  );
}

/**
 * Agents restart one at a time, standbys first. HAProxy checks the active machine through its
 * agent (/role), so while that agent restarts its health check is paused on every proxy (the
 * server stays UP, the application keeps serving: the agent's restart leaves it running) and
 * resumed once the new agent confirms the machine is active again. The observer's MAINT fencing
 * does not depend on the check, so it stays in force throughout.
 */
function agentRolling(run: Run, sh: (m: Machine) => RemoteShell, waitMs: number): Rolling {
  const proxies = withRole(run.o.cluster, 'proxy');
  const roles = new Map<string, number>();
  const roleOf = async (m: Machine) => (m.roles.includes('app') ? agentRole(sh(m), m) : 0);
  return {
    order: async (ms) => {
      await Promise.all(ms.map(async (m) => roles.set(m.name, await roleOf(m))));
      return [...ms].sort((a, b) => Number(roles.get(a.name) === 200) - Number(roles.get(b.name) === 200));
    },
    restart: async (m) => {
      const active = (roles.get(m.name) ?? (await roleOf(m))) === 200;
      const held = active ? proxies : [];
      if (held.length)
        run.note(
          m.name,
          'services',
          `HAProxy's health check of ${m.name} paused on ${held.map((p) => p.name).join(', ')} while the active machine's agent restarts`,
        );
      const paused: Machine[] = [];
      try {
        for (const p of held) {
          await remoteRuntime(sh(p)).disableHealth(APP_BACKEND, m.name);
          paused.push(p);
        }
        // The agent stopping sees the restart is planned and keeps the application up across it (src/agent/restart-grace.ts).
        if (active) {
          await sh(m).exec(['mkdir', '-p', ROOTS.run]);
          await sh(m).writeFile(PATHS.agentRestartMark, `${new Date().toISOString()}\n`, { mode: 0o644 });
        }
        await systemctl(sh(m), ['restart', UNITS.agent]);
        const want = active ? 'confirming it is the active machine (/role 200)' : 'answering';
        await waitUntil(
          `${m.name}'s agent ${want}`,
          m.name,
          waitMs,
          `read ${m.name}'s agent log (\`journalctl -u ${UNITS.agent}\`)`,
          async () => {
            const status = await roleOf(m);
            return (active ? status === 200 : status !== 0 || !m.roles.includes('app')) ? true : undefined;
          },
          'services',
          active ? () => agentWhyNotServing(sh(m), m) : undefined,
        );
      } finally {
        if (active) await sh(m).exec(['rm', '-f', PATHS.agentRestartMark]);
        for (const p of paused) await resumeChecks(p, m.name, sh);
      }
    },
  };
}

async function resumeChecks(proxy: Machine, server: string, sh: (m: Machine) => RemoteShell): Promise<void> {
  try {
    await remoteRuntime(sh(proxy)).enableHealth(APP_BACKEND, server);
  } catch (err) {
    throw new VigilError(
      'APPLY',
      [
        problem(
          `${proxy.name}, step services`,
          `cannot resume HAProxy's health check of ${server}: ${(err as Error).message}`,
          `run \`vigil apply\` again, which resumes every paused check (\`vigil doctor\` reports them)`,
        ),
      ],
      { cause: err },
    );
  }
}

/** Health checks of app servers left paused (an apply that was interrupted while holding one) are resumed. */
async function pausedChecks(run: Run, sh: (m: Machine) => RemoteShell): Promise<void> {
  await eachMachine(withRole(run.o.cluster, 'proxy'), async (p) =>
    step(p.name, 'services', async () => {
      const servers = await remoteRuntime(sh(p))
        .servers(APP_BACKEND)
        .catch(() => []); // HAProxy not running yet (plan on new machines): nothing is paused
      for (const s of servers.filter((x) => x.checks === 'disabled')) {
        run.change(p.name, 'services', `resume HAProxy's health check of ${s.server} (an interrupted apply left it paused)`);
        if (!run.o.dryRun) await resumeChecks(p, s.server, sh);
      }
    }),
  );
}

/** The application's units: the agent starts them on the active machine only; apply only restarts the ones running when their files changed. */
async function touchAppUnits(run: Run, sh: (m: Machine) => RemoteShell, m: Machine): Promise<void> {
  const asked = (run.pending.get(m.name) ?? []).filter((a) => a.action === 'try-restart' || a.action === 'try-reload');
  if (!asked.length) return;
  const states = await unitStates(
    sh(m),
    asked.map((a) => a.unit),
  );
  for (const a of asked) {
    if (!states.get(a.unit)?.active) continue;
    const verb = a.action === 'try-reload' ? 'reload' : 'restart';
    run.change(m.name, 'services', `${verb} ${a.unit} (its files changed)`);
    if (!run.o.dryRun) await systemctl(sh(m), [verb, a.unit]);
  }
}

/**
 * `p`'s value, or `otherwise` while Patroni gives no usable answer (not running yet, refusing).
 * An answer that is not Patroni's, or a failure of the machine's shell, reaches the caller
 * (waitUntil keeps trying and names the last one when it gives up).
 */
function unlessSilent<T, U>(p: Promise<T>, otherwise: U): Promise<T | U> {
  return p.catch((err: unknown) => {
    if (err instanceof PatroniError && err.code !== 'PATRONI_ANSWER') return otherwise;
    throw err;
  });
}

async function waitUntil<T>(
  what: string,
  machine: string,
  waitMs: number,
  fix: string,
  probe: () => Promise<T | undefined>,
  stepName: ApplyStep = 'services',
  /** Asked once the wait timed out: what the machine itself says (added to the error). */
  explain?: () => Promise<string>,
): Promise<T> {
  try {
    return await waitFor(what, probe, waitMs, 500);
  } catch (err) {
    const why = explain ? await explain().catch((e: Error) => `(could not ask: ${e.message})`) : undefined;
    throw new VigilError('APPLY', [problem(`${machine}, step ${stepName}`, `${(err as Error).message}${why ? `; ${why}` : ''}`, fix)], { cause: err });
  }
}

export async function services(run: Run, sh: (m: Machine) => RemoteShell): Promise<void> {
  const { cluster, dryRun } = run.o;
  const waitMs = run.o.waitMs ?? 180_000;
  await eachMachine(
    cluster.machines.filter((m) => run.unitFilesChanged.has(m.name)),
    async (m) => {
      if (!dryRun) await step(m.name, 'services', () => systemctl(sh(m), ['daemon-reload']));
    },
  );
  const etcd = withRole(cluster, 'etcd');
  const db = withRole(cluster, 'db');
  const proxies = withRole(cluster, 'proxy');
  // HTTP checks run on a machine that has Vigil's artifact (its node); preflight showed the ports reachable between machines.
  const probeAt: Probe = { machine: probeMachine(cluster), shell: sh(probeMachine(cluster)) };
  const probe = probeAt.shell;

  await resumeInterruptedPause(run, sh, probe);
  await converge(run, sh, etcd, UNITS.etcd, etcdRolling(run, sh, probeAt, waitMs));
  if (!dryRun)
    for (const m of etcd)
      await waitUntil(
        'etcd answering healthy',
        m.name,
        waitMs,
        `read ${m.name}'s etcd log (\`journalctl -u ${UNITS.etcd}\`); every etcd member must reach the others on port 2380`,
        async () => ((await etcdGet(probeAt, m, '/health')).status === 200 ? true : undefined),
      );
  await converge(run, sh, db, UNITS.patroni);
  // Patroni asked from the probe machine, each call with remoteGet's deadline.
  const patroni = (m: Machine) => patroniOf(cluster, m, { transport: remotePatroni(probe) });
  const findPrimary = async () => {
    for (const m of db) if (await unlessSilent(patroni(m).check('primary', { timeoutMs: 3000 }), false)) return m;
    return undefined;
  };
  let primary: Machine | undefined;
  if (db.length) {
    primary = dryRun
      ? await findPrimary()
      : await waitUntil(
          'a PostgreSQL primary (Patroni)',
          db[0]!.name,
          waitMs,
          `read \`journalctl -u ${UNITS.patroni}\` on ${db.map((m) => m.name).join(', ')}`,
          findPrimary,
        );
    if (primary && !dryRun) run.note(primary.name, 'services', 'PostgreSQL primary');
  }
  await converge(run, sh, proxies, UNITS.haproxy);
  // After HAProxy: keepalived's check asks it, and a machine whose HAProxy does not answer yet stays out of the election.
  await converge(
    run,
    sh,
    proxies.filter((m) => runsKeepalived(cluster, m)),
    UNITS.keepalived,
  );
  await database(run, sh, primary, waitMs);
  if (!dryRun && primary && cluster.database.replication === 'synchronous' && db.length > 1)
    await waitUntil(
      'a synchronous standby',
      primary.name,
      waitMs,
      `read \`journalctl -u ${UNITS.patroni}\` on the replicas; they must reach ${primary.name}:5432`,
      async () => {
        const view = await unlessSilent(patroni(primary!).cluster({ timeoutMs: 3000 }), undefined);
        return view?.members.some((x) => x.role === 'sync_standby' && ['running', 'streaming'].includes(x.state)) ? true : undefined;
      },
    );
  for (const m of withRole(cluster, 'app')) await step(m.name, 'services', () => touchAppUnits(run, sh, m));
  // Before the agents: it acts only on a lease an agent wrote, and keeps its promise across their restarts.
  await converge(run, sh, withRole(cluster, 'app'), UNITS.deadman);
  await pausedChecks(run, sh);
  await converge(run, sh, agentMachines(cluster), UNITS.agent, agentRolling(run, sh, waitMs));
  await converge(run, sh, withRole(cluster, 'observer'), UNITS.observer);
}

/**
 * The application's role and database on the primary (src/apply/appdb.ts): read, compared with the
 * cluster file and the secrets, and created or corrected over the primary machine's shell.
 */
async function database(run: Run, sh: (m: Machine) => RemoteShell, primary: Machine | undefined, waitMs: number): Promise<void> {
  const { cluster, secrets, dryRun } = run.o;
  const { appUser, appDatabase } = cluster.database;
  const db = withRole(cluster, 'db');
  if (!db.length) return;
  if (!primary) {
    // plan, where PostgreSQL does not run yet
    run.change(db[0]!.name, 'database', `create the role ${appUser} and the database ${appDatabase} on the primary (PostgreSQL does not run yet)`);
    return;
  }
  await step(primary.name, 'database', async () => {
    const shell = sh(primary);
    // Patroni answers /primary as soon as PostgreSQL is promoted; the first statements may still find it starting.
    // plan looks once; apply waits for it.
    const state = dryRun
      ? await readAppDbState(shell, cluster)
      : await waitUntil(
          `PostgreSQL on ${primary.name} answering on its local socket`,
          primary.name,
          waitMs,
          `read the PostgreSQL log on ${primary.name}`,
          () => readAppDbState(shell, cluster).catch(() => undefined),
          'database',
        );
    const differences = appDbDifferences(state, cluster, secrets);
    for (const d of differences) run.change(primary.name, 'database', d);
    if (differences.length && !dryRun) await ensureAppDb(shell, cluster, secrets, state);
  });
}

/** The application answers its health check through the proxy: the whole path works. */
export async function verify(run: Run, sh: (m: Machine) => RemoteShell): Promise<boolean> {
  const { cluster } = run.o;
  const proxy = withRole(cluster, 'proxy')[0];
  if (run.o.dryRun || !proxy || !withRole(cluster, 'app').length) return false;
  // Through the entry point clients use: the floating address once keepalived holds it somewhere.
  const url = `http://${entryAddress(cluster)!}:${cluster.proxy.httpPort}${cluster.application.healthPath}`;
  await step(proxy.name, 'verify', () =>
    waitUntil(
      `the application answering ${url}`,
      proxy.name,
      run.o.waitMs ?? 180_000,
      'run `vigil doctor` to see which part is missing',
      async () => ((await remoteGet(sh(probeMachine(cluster)), url)).status === 200 ? true : undefined),
      'verify',
    ),
  );
  run.note(proxy.name, 'verify', `${url} answers 200 through HAProxy`);
  return true;
}
