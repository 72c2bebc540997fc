/**
 * The application tier: nginx and the application's services run on the active app machine only
 * (the seed's "Nginx is running on the Slave APP"), the same application version on every app
 * machine, every agent answering and ready, file sync healthy with nothing quarantined, and
 * Vigil's records in etcd (an active machine, an observer leading, maintenance off).
 */
import { agentMachines, withRole } from '../../config/schema.ts';
import { AGENT_PORT } from '../../layout/network.ts';
import { appPort } from '../../layout/backend.ts';
import { UNITS } from '../../layout/units.ts';
import type { Results } from '../results.ts';
import { activeNode, fmtBytes, reachable, type EvalContext } from './context.ts';

const TWO_MASTERS = 'only the active machine may serve: anything answering on a standby splits users, tickets and attachments between two masters';

export function checkServices(ctx: EvalContext, r: Results): void {
  const active = activeNode(ctx);
  const up = reachable(ctx);
  const port = appPort(ctx.cluster);
  for (const m of withRole(ctx.cluster, 'app')) {
    const f = up.get(m.name);
    if (!f) continue;
    if (f.systemd?.enabledUnits.ok) {
      for (const u of f.systemd.enabledUnits.value.filter((x) => x.state === 'enabled')) {
        r.warn(
          'services',
          m.name,
          `${u.unit} is enabled at boot on ${m.name}`,
          'it starts on its own after a reboot, before the agent has confirmed that this machine is the active one: a rebooted former master would serve beside the new one',
          ctx.fixes.on(m.name, ['systemctl', 'disable', u.unit]),
        );
      }
    }
    const deadman = f.systemd?.deadman;
    if (deadman?.ok && deadman.value !== 'active')
      r.fail(
        'services',
        m.name,
        `the dead-man switch (${UNITS.deadman}) is ${deadman.value} on ${m.name}`,
        "it stops the application when the agent's lease has run out and the agent cannot (dead or hung): without it, after a failover away from this machine its application keeps running beside the new one",
        ctx.fixes.on(m.name, ['systemctl', 'enable', '--now', UNITS.deadman]),
      );
    if ('unknown' in active) {
      r.skip('services', m.name, active.unknown);
      continue;
    }
    r.ran('services', m.name);
    const agent = ctx.facts.cluster.agents.find((a) => a.machine === m.name)?.status;
    if (active.node !== m.name) {
      const listeners = f.listeners?.ok ? f.listeners.value.filter((l) => l.port === port) : [];
      const procs = new Map(listeners.flatMap((l) => l.processes).map((p) => [p.name, p]));
      if (listeners.length > 0 && procs.size === 0) procs.set('unknown process', { name: 'unknown process', pid: 0 });
      for (const p of procs.values()) {
        // Without a pid (ss could not tell), the fix is finding the process first.
        const fix = p.pid
          ? ctx.fixes.stopStray(m.name, { ...p, unit: f.processUnits?.[p.pid] ?? null })
          : `find the process: ${ctx.fixes.on(m.name, ['ss', '-ltnp', `sport = :${port}`])}, then stop it`;
        r.fail(
          'services',
          m.name,
          `${p.name}${p.pid ? ` (pid ${p.pid})` : ''} listens on port ${port} on ${m.name}, a standby (the active machine is ${active.node ?? 'none'})`,
          TWO_MASTERS,
          fix,
        );
      }
      for (const s of agent?.services ?? []) {
        const svc = ctx.cluster.application.services.find((x) => x.name === s.name) ?? { name: s.name, unit: s.name, runsOn: 'active' as const };
        if (svc.runsOn === 'every') {
          // A warm service belongs on a standby; one that is down makes the failover a cold start.
          if (!s.running)
            r.warn(
              'services',
              m.name,
              `the application's warm service ${s.name} (runsOn: every) is not running on ${m.name}, a standby`,
              'a failover to this machine has to start it first: it takes its start-up time instead of seconds (the agent starts it again by itself)',
              ctx.fixes.on(m.name, ['systemctl', 'status', svc.unit]),
            );
          else if (s.ready === false)
            r.warn(
              'services',
              m.name,
              `the application's warm service ${s.name} (runsOn: every) runs on ${m.name}, a standby, but does not pass its own health check (${svc.healthUrl ?? 'healthUrl'}): still starting, or failing`,
              'a failover to this machine now would wait for it to finish starting (its start-up time) instead of taking seconds',
              `wait for its start-up, then run \`vigil doctor\` again; if it stays so: ${ctx.fixes.on(m.name, ['journalctl', '-u', svc.unit, '-n', '50'])}`,
            );
          continue;
        }
        if (!s.running || procs.has(s.name)) continue; // already reported through its socket
        r.fail('services', m.name, `the application's service ${s.name} runs on ${m.name}, a standby`, TWO_MASTERS, ctx.fixes.stopService(m.name, svc));
      }
    } else if (agent) {
      for (const s of agent.services.filter((x) => !x.running)) {
        r.fail(
          'services',
          m.name,
          `the application's service ${s.name} is not running on ${m.name}, the active machine`,
          'users get errors until it runs or the observer fails over',
          ctx.fixes.start(m.name, 'nginx'),
        );
      }
      // A service with a health check of its own (an analytics service) that runs but does not answer it: the role check
      // is the application's health, so nothing moves; only this says it.
      for (const s of agent.services.filter((x) => x.running && x.ready === false)) {
        const svc = ctx.cluster.application.services.find((x) => x.name === s.name);
        r.warn(
          'services',
          m.name,
          `the application's service ${s.name} runs on ${m.name}, the active machine, but does not pass its own health check (${svc?.healthUrl ?? 'healthUrl'}): still starting, or failing`,
          'what it does for users (reports, background work) may be missing; the proxy keeps routing to this machine, whose application answers',
          `read its log: ${ctx.fixes.on(m.name, ['journalctl', '-u', svc?.unit ?? s.name, '-n', '50'])}`,
        );
      }
    }
  }
}

/**
 * The application's version, defined as the SHA-256 of each service's program (its executable,
 * or the script or archive an interpreter runs): what actually runs after a failover. The active
 * machine's digests are the reference; without one, the most common.
 */
export function checkAppVersion(ctx: EvalContext, r: Results): void {
  const up = reachable(ctx);
  const apps = withRole(ctx.cluster, 'app').filter((m) => up.has(m.name));
  const active = activeNode(ctx);
  const digests = new Map<string, Map<string, { program: string; sha256: string | null }>>(); // service -> machine -> digest
  for (const m of apps) {
    const v = up.get(m.name)!.appVersion;
    if (!v) continue;
    if (!v.ok) {
      r.warn(
        'app-version',
        m.name,
        `the application's version on ${m.name} cannot be checked: ${v.error}`,
        'a standby with another version serves a different application after a failover',
        ctx.fixes.on(m.name, ['sha256sum', '--', '<program of each service>']),
      );
      continue;
    }
    r.ran('app-version', m.name);
    for (const d of v.value) {
      if (d.sha256 === null) {
        r.fail(
          'app-version',
          m.name,
          `${d.program}, the program of the service ${d.service}, is missing on ${m.name}`,
          'the service cannot start there: a failover to this machine leaves users without the application',
          ctx.fixes.reinstall(m.name, `the application (${d.program})`),
        );
        continue;
      }
      if (!digests.has(d.service)) digests.set(d.service, new Map());
      digests.get(d.service)!.set(m.name, d);
    }
  }
  for (const [service, byMachine] of digests) {
    const counts = new Map<string, number>();
    for (const d of byMachine.values()) counts.set(d.sha256!, (counts.get(d.sha256!) ?? 0) + 1);
    if (counts.size < 2) continue;
    const activeDigest = 'node' in active && active.node ? byMachine.get(active.node) : undefined;
    const refSha = activeDigest?.sha256 ?? [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    const refMachine = [...byMachine].find(([, d]) => d.sha256 === refSha)![0];
    for (const [machine, d] of byMachine) {
      if (d.sha256 === refSha) continue;
      r.fail(
        'app-version',
        machine,
        `${service} on ${machine} is not the version on ${refMachine}: ${d.program} has SHA-256 ${d.sha256!.slice(0, 12)}…, ${refMachine}'s ${refSha.slice(0, 12)}…`,
        'after a failover users get another version of the application, whose database schema and files may not match',
        `install on ${machine} the ${service} that ${refMachine} runs; then ${ctx.fixes.on(machine, ['sha256sum', d.program])} prints ${refSha.slice(0, 12)}… as on ${refMachine}`,
      );
    }
  }
}

export function checkAgents(ctx: EvalContext, r: Results): void {
  const pki = ctx.facts.cluster.adminPki;
  const withAgent = agentMachines(ctx.cluster);
  if (!pki.ok) {
    r.fail(
      'agent',
      null,
      `the admin's certificate cannot be used: ${pki.error}`,
      'doctor, `vigil status` and the operator commands ask the agents with it; without it nothing can be asked or fenced from here',
      ctx.fixes.reinstall('the admin machine', 'the admin certificate (pki/admin.pem, admin.key)'),
    );
    for (const m of withAgent) r.skip('agent', m.name, 'no usable admin certificate');
    return;
  }
  const active = activeNode(ctx);
  for (const m of withAgent) {
    const status = ctx.facts.cluster.agents.find((a) => a.machine === m.name)?.status;
    if (!status) {
      r.fail(
        'agent',
        m.name,
        `the agent on ${m.name} does not answer on port ${AGENT_PORT} (or refuses the admin's certificate)`,
        m.roles.includes('app')
          ? "HAProxy's role check and the observer go through it: an app machine without its agent never serves, and an active one is failed over"
          : "its machine's state is invisible to `vigil status` and the observer",
        ctx.fixes.start(m.name, 'agent'),
      );
      continue;
    }
    r.ran('agent', m.name);
    if (!m.roles.includes('app') || 'unknown' in active) continue;
    if (status.active && active.node !== m.name) {
      r.fail(
        'agent',
        m.name,
        `the agent on ${m.name} considers itself active, but etcd names ${active.node ?? 'no machine'}`,
        TWO_MASTERS,
        ctx.fixes.vigil(['failover', '--to', active.node ?? '<app machine>']),
      );
    } else if (active.node === m.name && !status.active) {
      r.fail(
        'agent',
        m.name,
        `${m.name} is the active machine in etcd, but its agent has not confirmed it (last confirmation ${status.confirmedAgoMs ?? 'never'} ms ago)`,
        'it does not serve: users get errors until it confirms or the observer fails over',
        ctx.fixes.start(m.name, 'agent'),
      );
    } else if (status.active && !status.appHealthy) {
      r.fail(
        'agent',
        m.name,
        `the application on ${m.name}, the active machine, fails its health check (${ctx.cluster.application.healthPath})`,
        'users get errors; the observer fails over once a standby is ready',
        ctx.fixes.start(m.name, 'nginx'),
      );
    } else if (!status.active && !status.ready) {
      r.fail(
        'agent',
        m.name,
        `${m.name}, a standby, is not ready to take over: its agent has not confirmed the active record in etcd within the lease (last ${status.confirmedAgoMs ?? 'never'} ms ago)`,
        'if the active machine fails now, the observer has no machine to fail over to',
        ctx.fixes.start(m.name, 'agent'),
      );
    }
  }
}

export function checkFileSync(ctx: EvalContext, r: Results): void {
  const active = activeNode(ctx);
  for (const m of withRole(ctx.cluster, 'app')) {
    const status = ctx.facts.cluster.agents.find((a) => a.machine === m.name)?.status;
    const sync = status?.sync;
    if (!status) continue; // reported by the agent check
    if (!sync) {
      r.skip('file-sync', m.name, 'the agent reports no file sync');
      continue;
    }
    r.ran('file-sync', m.name);
    const q = sync.quarantine;
    if (q && q.files > 0) {
      const to = 'node' in active && active.node ? active.node : 'the active machine';
      r.warn(
        'file-sync',
        m.name,
        `${q.files} file(s) (${fmtBytes(q.bytes)}) on ${m.name} were moved aside into ${q.path}${q.sessions.length ? ` (${q.sessions.join(', ')})` : ''}: they were written while ${m.name} was active and never reached the machine that took over`,
        'the application does not see them: tickets may miss attachments or patches; Vigil keeps them and never deletes them, so someone must decide',
        `review them: ${ctx.fixes.on(m.name, ['ls', '-lR', q.path])}; copy what is still needed into the same directories on ${to}, then remove them: ${ctx.fixes.on(m.name, ['rm', '-r', '--', q.path])}`,
      );
    }
    if (sync.watch?.degraded) {
      r.warn(
        'file-sync',
        m.name,
        `file sync on ${m.name} cannot watch every directory (${sync.watch.degraded}): changes are found only by the periodic reconciliation`,
        'files reach the standbys late; a failover in between leaves them behind (quarantined)',
        ctx.fixes.on(m.name, ['sysctl', '-w', 'fs.inotify.max_user_watches=1048576']),
      );
    }
    for (const p of sync.peers ?? []) {
      if (!p.error) continue;
      const fix =
        p.error.kind === 'disk-full'
          ? ctx.fixes.on(p.node, ['du', '-xh', '--max-depth=2', '/var/lib/vigil'])
          : p.error.kind === 'unreachable'
            ? `see the ports findings of ${p.node}; ${ctx.fixes.start(p.node, 'sshd')}`
            : ctx.fixes.reinstall(p.node, "file sync's SSH keys");
      r.fail(
        'file-sync',
        m.name,
        `file sync from ${m.name} to ${p.node} fails since ${p.error.since} (${p.error.kind}: ${p.error.message}); ${p.backlog} change(s) waiting`,
        `${p.node} misses the newest files: after a failover to it users lose them (they are quarantined on ${m.name})`,
        fix,
      );
    }
  }
}

/**
 * The air gap (docs/airgap.md): every app machine holds the cluster's last bundle, and its patch
 * directory is exactly that bundle's manifest (the seed's "Patch Management > Health Check").
 */
export function checkAirgap(ctx: EvalContext, r: Results): void {
  const dir = ctx.cluster.application.patchDir;
  if (!dir) return;
  const s = ctx.facts.cluster.state;
  const last = s.ok ? (s.value.airgap ?? null) : null;
  const active = activeNode(ctx);
  const activeName = 'node' in active && active.node ? active.node : null;
  for (const m of withRole(ctx.cluster, 'app')) {
    const status = ctx.facts.cluster.agents.find((a) => a.machine === m.name)?.status;
    if (!status) continue; // reported by the agent check
    const a = status.airgap;
    if (!a) {
      r.skip('airgap', m.name, 'the agent reports no patch directory (an agent older than application.patchDir?)');
      continue;
    }
    r.ran('airgap', m.name);
    const isActive = m.name === activeName;
    const reimport = 'import the bundle again from the admin machine: `vigil airgap import BUNDLE --trust TRUST`';
    if (a.error) {
      r.fail(
        'airgap',
        m.name,
        `the patch directory ${dir} on ${m.name} cannot be checked: ${a.error}`,
        'nobody can tell which patches this machine serves',
        reimport,
      );
      continue;
    }
    if (last && a.sequence !== last.sequence) {
      r.fail(
        'airgap',
        m.name,
        `${m.name} holds ${a.sequence === null ? 'no air-gap bundle' : `bundle sequence ${a.sequence}`} in ${dir}; the cluster imported sequence ${last.sequence} on ${last.node} at ${last.importedAt}`,
        isActive
          ? 'the application serves another set of patches than the one imported'
          : `after a failover to ${m.name} the application serves an older set of patches`,
        isActive ? reimport : `file sync carries it from the active machine: see the file-sync findings; ${reimport} if it does not arrive`,
      );
      continue;
    }
    if (a.sequence !== null && !a.matches) {
      const parts = [
        a.counts.missing ? `${a.counts.missing} missing (${a.missing.join(', ')})` : '',
        a.counts.different ? `${a.counts.different} different (${a.different.join(', ')})` : '',
        a.counts.extra ? `${a.counts.extra} not in the manifest (${a.extra.join(', ')})` : '',
      ].filter(Boolean);
      r.fail(
        'airgap',
        m.name,
        `the patch directory ${dir} on ${m.name} differs from the manifest of bundle sequence ${a.sequence}: ${parts.join('; ')}`,
        isActive
          ? 'the files were changed after the import: the application serves patches nobody signed'
          : `after a failover to ${m.name} the application serves patches that differ from the signed set`,
        isActive
          ? `compare with ${dir}'s manifest (${dir}/.vigil-airgap/manifest.json) and carry a new bundle (a higher sequence) with the right files`
          : `file sync's next full reconciliation (fileSync.reconcileIntervalSeconds, by content) restores it from the active machine; if it stays, check the file-sync findings`,
      );
    }
  }
}

export function checkClusterState(ctx: EvalContext, r: Results): void {
  const s = ctx.facts.cluster.state;
  if (!s.ok) {
    r.fail(
      'cluster-state',
      null,
      `Vigil's records in etcd cannot be read: ${s.error}`,
      'the observer cannot fail over and the agents stop the application once their lease runs out',
      'see the etcd findings above',
    );
    return;
  }
  r.ran('cluster-state', null);
  const { active, observerLeader, maintenance } = s.value;
  const apps = withRole(ctx.cluster, 'app');
  const observers = withRole(ctx.cluster, 'observer');
  if (apps.length && !active) {
    r.fail(
      'cluster-state',
      null,
      'no app machine is active: the observer has not chosen one',
      'nothing serves users',
      observers[0] ? ctx.fixes.start(observers[0].name, 'observer') : 'give a machine the observer role',
    );
  } else if (active && !apps.some((m) => m.name === active.node)) {
    r.fail(
      'cluster-state',
      null,
      `etcd names ${active.node} as the active machine, which is not an app machine of the cluster file`,
      'no machine serves',
      ctx.fixes.vigil(['failover', '--to', apps[0]?.name ?? '<app machine>']),
    );
  }
  if (observers.length && !observerLeader) {
    r.fail(
      'cluster-state',
      null,
      'no observer holds the leadership in etcd',
      'nobody watches the app machines: no automatic failover',
      ctx.fixes.start(observers[0]!.name, 'observer'),
    );
  }
  if (maintenance) {
    r.warn(
      'cluster-state',
      null,
      `maintenance is on since ${maintenance.since} (${maintenance.by}: ${maintenance.reason})`,
      'the observer takes no action: a failed active machine is not replaced',
      ctx.fixes.vigil(['maintenance', 'off']),
    );
  }
}
