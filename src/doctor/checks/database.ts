/**
 * The consensus and database tiers: every etcd member healthy, a quorum, a leader, the members
 * the cluster file names; Patroni with exactly one primary, every db machine a running member,
 * a synchronous standby in synchronous mode, not paused; replication lag within what Patroni
 * will still promote.
 */
import { timerProblems } from '../../render/patroni.ts';
import { etcdctlTlsFlags } from '../../render/etcd.ts';
import { PATHS } from '../../layout/paths.ts';
import { leaderKeyFinding, overwritesLeaderKey, parsePatroniVersion } from '../../patroni/versions.ts';
import { WATCHDOG_DEVICE } from '../../layout/units.ts';
import { withRole } from '../../config/schema.ts';
import type { Results } from '../results.ts';
import { THRESHOLDS } from '../thresholds.ts';
import { fmtBytes, type EvalContext } from './context.ts';

/** etcdctl as root on an etcd machine, with the TLS flags etcd needs (the machine's own certificate). */
const etcdctl = (machine: string, endpoint: string): string[] => ['etcdctl', ...etcdctlTlsFlags(machine), `--endpoints=${endpoint}`];

const ETCD_WHY =
  'etcd holds every leader lock and the active record: Patroni demotes a primary that cannot renew its key, and agents stop the application when they cannot confirm their role';

export function checkEtcd(ctx: EvalContext, r: Results): void {
  const members = withRole(ctx.cluster, 'etcd');
  if (members.length === 0) return;
  let healthy = 0;
  for (const e of ctx.facts.cluster.etcd) {
    r.ran('etcd', e.machine);
    if (!e.health.ok) {
      r.fail(
        'etcd',
        e.machine,
        `etcd on ${e.machine} does not answer on ${e.endpoint}/health (${e.health.error})`,
        ETCD_WHY,
        ctx.fixes.start(e.machine, 'etcd'),
      );
      continue;
    }
    if (!e.health.value.healthy) {
      const reason = e.health.value.reason ?? '';
      const fix = /NOSPACE/i.test(reason)
        ? ctx.fixes.on(e.machine, [
            'sh',
            '-c',
            `${etcdctl(e.machine, e.endpoint).join(' ')} defrag && ${etcdctl(e.machine, e.endpoint).join(' ')} alarm disarm`,
          ])
        : ctx.fixes.on(e.machine, [...etcdctl(e.machine, e.endpoint), 'endpoint', 'status', '-w', 'table']);
      r.fail('etcd', e.machine, `etcd on ${e.machine} reports itself unhealthy${reason ? ` (${reason})` : ''}`, ETCD_WHY, fix);
      continue;
    }
    healthy++;
    if (e.status.ok) {
      if (e.status.value.leader === '0' || e.status.value.leader === '') {
        r.fail(
          'etcd',
          e.machine,
          `etcd on ${e.machine} has no leader`,
          ETCD_WHY,
          ctx.fixes.on(e.machine, [...etcdctl(e.machine, e.endpoint), 'endpoint', 'status', '--cluster', '-w', 'table']),
        );
      }
      const used = e.status.value.dbSizeBytes / THRESHOLDS.etcdQuotaBytes;
      if (used > THRESHOLDS.etcdWarnQuotaFraction) {
        r.warn(
          'etcd',
          e.machine,
          `etcd's database on ${e.machine} is ${fmtBytes(e.status.value.dbSizeBytes)}, ${Math.round(used * 100)} % of its ${fmtBytes(THRESHOLDS.etcdQuotaBytes)} quota`,
          'at the quota etcd raises a NOSPACE alarm and refuses every write',
          ctx.fixes.on(e.machine, [...etcdctl(e.machine, e.endpoint), 'defrag']),
        );
      }
    }
  }
  r.ran('etcd', null);
  const quorum = Math.floor(members.length / 2) + 1;
  if (healthy < quorum) {
    r.fail(
      'etcd',
      null,
      `etcd has no quorum: ${healthy} of ${members.length} member(s) healthy, ${quorum} needed`,
      `${ETCD_WHY}; without a quorum nothing can be written at all`,
      `start etcd on the members that are down (${ctx.facts.cluster.etcd
        .filter((e) => !(e.health.ok && e.health.value.healthy))
        .map((e) => e.machine)
        .join(', ')}), see their findings`,
    );
  }
  const listed = ctx.facts.cluster.etcdMembers;
  if (listed.ok) {
    for (const m of members.filter((x) => !listed.value.includes(x.name))) {
      r.fail(
        'etcd',
        m.name,
        `${m.name} is not a member of the etcd cluster (members: ${listed.value.join(', ') || 'none'})`,
        'the cluster has fewer members than the cluster file says, and one more failure may lose the quorum',
        ctx.fixes.reinstall(m.name, 'the etcd member (after `etcdctl member add`)'),
      );
    }
    const unknown = listed.value.filter((n) => !members.some((m) => m.name === n));
    if (unknown.length) {
      r.warn(
        'etcd',
        null,
        `etcd lists member(s) the cluster file does not name: ${unknown.join(', ')}`,
        'a member that is gone still counts towards the quorum: one more failure may stop the cluster',
        `${ctx.facts.cluster.etcd[0] ? etcdctl(ctx.facts.cluster.etcd[0].machine, ctx.facts.cluster.etcd[0].endpoint).join(' ') : 'etcdctl'} member list, then etcdctl member remove <ID> for each (same flags)`,
      );
    }
  }
}

const RUNNING = new Set(['running', 'streaming']);

export function checkPatroni(ctx: EvalContext, r: Results): void {
  const dbs = withRole(ctx.cluster, 'db');
  if (dbs.length === 0) return;
  const p = ctx.facts.cluster.patroni;
  const cfg = PATHS.patroniConfig;
  if (!p.ok) {
    // Patroni that runs (its port listens) but cannot answer /cluster has lost etcd; starting it again would not help.
    const patroniListens = (name: string) => {
      const l = ctx.facts.machines.find((f) => f.name === name)?.listeners;
      return l?.ok === true && l.value.some((x) => x.port === ctx.cluster.database.patroniPort);
    };
    const down = dbs.filter((m) => !patroniListens(m.name));
    const fix = down.length
      ? down.map((m) => ctx.fixes.start(m.name, 'patroni')).join('; ')
      : `Patroni runs on ${dbs.map((m) => m.name).join(', ')} but cannot build its view of the cluster without etcd: see the etcd findings; then ${ctx.fixes.on(dbs[0]!.name, ['patronictl', '-c', cfg, 'list'])}`;
    r.fail(
      'patroni',
      null,
      `Patroni's REST API answers on no db machine: ${p.error}`,
      "nobody can tell which machine is the primary; HAProxy's :5000 has no server and writes fail",
      fix,
    );
    return;
  }
  r.ran('patroni', null);
  const { members, paused, synchronousMode, failsafeMode } = p.value;
  const leaders = members.filter((m) => m.role === 'leader' || m.role === 'master' || m.role === 'primary');
  const diagnose = ctx.fixes.on(p.value.from, ['patronictl', '-c', cfg, 'list']);
  if (leaders.length === 0) {
    r.fail(
      'patroni',
      null,
      'Patroni has no primary',
      'the application cannot write: tickets cannot be created',
      `${diagnose} shows each member's state; start Patroni where it is stopped`,
    );
  } else if (leaders.length > 1) {
    r.fail(
      'patroni',
      null,
      `Patroni reports ${leaders.length} primaries: ${leaders.map((m) => m.name).join(', ')}`,
      'two writable primaries diverge: writes on one are lost',
      diagnose,
    );
  }
  for (const m of dbs) {
    const member = members.find((x) => x.name === m.name);
    r.ran('patroni', m.name);
    if (!member) {
      r.fail(
        'patroni',
        m.name,
        `${m.name} is not a member of the Patroni cluster (Patroni is not running there, or cannot reach etcd)`,
        'the database has one copy fewer: if the primary fails there may be no machine to take over',
        ctx.fixes.start(m.name, 'patroni'),
      );
    } else if (!RUNNING.has(member.state)) {
      r.fail(
        'patroni',
        m.name,
        `Patroni on ${m.name} reports PostgreSQL as "${member.state}"`,
        'a member that is not running neither serves nor replicates',
        `${ctx.fixes.on(m.name, ['patronictl', '-c', cfg, 'list'])}; if it does not recover: ${ctx.fixes.on(m.name, ['patronictl', '-c', cfg, 'reinit', ctx.cluster.cluster.name, m.name, '--force'])}`,
      );
    }
  }
  for (const extra of members.filter((x) => !dbs.some((m) => m.name === x.name))) {
    r.warn(
      'patroni',
      null,
      `Patroni has a member the cluster file does not name: ${extra.name}`,
      'a stray member may be promoted, or hold the synchronous standby role',
      `stop Patroni on ${extra.name}, then ${ctx.fixes.on(p.value.from, ['patronictl', '-c', cfg, 'remove', ctx.cluster.cluster.name])}`,
    );
  }
  const wantSync = ctx.cluster.database.replication === 'synchronous';
  if (synchronousMode !== null && synchronousMode !== wantSync) {
    const fix = ctx.fixes.on(p.value.from, ['patronictl', '-c', cfg, 'edit-config', '--set', `synchronous_mode=${wantSync}`, '--force']);
    if (wantSync)
      r.fail(
        'patroni',
        null,
        'the cluster file asks for synchronous replication, but Patroni runs asynchronous',
        'acknowledged writes can be lost in a failover (Patroni read synchronous_mode from etcd, where it was written at bootstrap)',
        fix,
      );
    else
      r.warn(
        'patroni',
        null,
        'the cluster file asks for asynchronous replication, but Patroni runs synchronous',
        'writes wait for a standby; with none, Patroni promotes nothing',
        fix,
      );
  }
  // Patroni 3.0.0 to 3.0.2: failsafe mode is kept off there (observer/db-release.ts failsafeWanted).
  const olderPatroni = ctx.facts.machines.some(
    (f) => f.dbSafety?.patroniVersion.ok && overwritesLeaderKey(parsePatroniVersion(f.dbSafety.patroniVersion.value)),
  );
  if (failsafeMode === false && !olderPatroni)
    r.warn(
      'patroni',
      null,
      "Patroni's DCS failsafe mode is off",
      'while etcd is down, hung or without quorum, the primary demotes itself and writes stop although every db machine is healthy (Vigil sets failsafe_mode at bootstrap; a cluster made before that, or edited since, lacks it)',
      ctx.fixes.on(p.value.from, ['patronictl', '-c', cfg, 'edit-config', '--set', 'failsafe_mode=true', '--force']),
    );
  if (
    wantSync &&
    synchronousMode !== false &&
    dbs.length > 1 &&
    leaders.length === 1 &&
    !members.some((m) => m.role === 'sync_standby' && RUNNING.has(m.state))
  ) {
    r.fail(
      'patroni',
      null,
      'Patroni has no synchronous standby',
      'in synchronous mode only the synchronous standby may be promoted: if the primary fails now, nothing takes over and writes stop',
      `${diagnose}; start Patroni on the replicas`,
    );
  }
  if (paused) {
    r.warn(
      'patroni',
      null,
      'Patroni is paused (its maintenance mode)',
      'it fails nothing over while paused',
      ctx.fixes.on(p.value.from, ['patronictl', '-c', cfg, 'resume']),
    );
  }
}

export function checkReplication(ctx: EvalContext, r: Results): void {
  const p = ctx.facts.cluster.patroni;
  if (!p.ok) return;
  const max = ctx.cluster.database.maximumLagOnFailoverBytes;
  const cfg = PATHS.patroniConfig;
  for (const m of p.value.members.filter((x) => x.role !== 'leader' && x.role !== 'master' && x.role !== 'primary')) {
    if (!withRole(ctx.cluster, 'db').some((d) => d.name === m.name)) continue;
    r.ran('replication', m.name);
    const reinit = ctx.fixes.on(m.name, ['patronictl', '-c', cfg, 'reinit', ctx.cluster.cluster.name, m.name, '--force']);
    if (m.lagUnknown && RUNNING.has(m.state)) {
      r.warn(
        'replication',
        m.name,
        `Patroni does not know how far ${m.name} is behind the primary`,
        'a replica that does not stream is not a failover candidate',
        `${ctx.fixes.on(m.name, ['patronictl', '-c', cfg, 'list'])}; if it does not stream again: ${reinit}`,
      );
      continue;
    }
    if (m.lagBytes === null) continue;
    const what = `${m.name} is ${fmtBytes(m.lagBytes)} behind the primary (maximumLagOnFailoverBytes: ${fmtBytes(max)})`;
    if (m.lagBytes > max)
      r.fail(
        'replication',
        m.name,
        what,
        'Patroni will not promote it: if the primary fails, there may be no machine to take over (asynchronous mode would lose that much)',
        `find why it falls behind (network, disk): ${ctx.fixes.on(m.name, ['patronictl', '-c', cfg, 'list'])}; to rebuild it: ${reinit}`,
      );
    else if (m.lagBytes > max * THRESHOLDS.lagWarnFraction)
      r.warn('replication', m.name, what, 'a little more and Patroni will not promote it', ctx.fixes.on(m.name, ['patronictl', '-c', cfg, 'list']));
  }
}

const softdog = (machine: string) =>
  `on ${machine}: \`modprobe softdog && echo softdog > /etc/modules-load.d/softdog.conf\` (or give the virtual machine a watchdog device, such as i6300esb)`;

/**
 * What each db machine holds against a stale primary (failure-semantics.md, "A stale primary"):
 * a Patroni that writes its leader key in a transaction, and a watchdog device that
 * database.watchdog uses.
 */
export function checkStalePrimary(ctx: EvalContext, r: Results): void {
  const required = ctx.cluster.database.watchdog === 'required';
  for (const f of ctx.facts.machines) {
    const s = f.dbSafety;
    if (!s) continue;
    r.ran('stale-primary', f.name);
    if (s.patroniVersion.ok) {
      const version = parsePatroniVersion(s.patroniVersion.value);
      if (overwritesLeaderKey(version)) {
        const x = leaderKeyFinding(version.join('.'), f.name);
        r.warn('stale-primary', f.name, x.what, x.why, x.fix);
      }
      // Patroni 3.2+ raise a short ttl to 20 s with only a log line: the cluster file would say otherwise.
      for (const p of version.length ? timerProblems(ctx.cluster, version.join('.')) : []) {
        if (!/silently raises/.test(p.message)) continue;
        r.warn(
          'stale-primary',
          f.name,
          `${p.where}: ${p.message} (Patroni ${version.join('.')} on ${f.name})`,
          "the leader lock of a dead primary lives as long as Patroni's own ttl; with database.failoverBy: observer the observer ends it sooner",
          `${p.fix} in vigil.yaml; it takes effect through \`patronictl edit-config\` (Patroni reads bootstrap.dcs only once)`,
        );
      }
    } else {
      r.warn(
        'stale-primary',
        f.name,
        `could not read Patroni's version on ${f.name}: ${s.patroniVersion.error}`,
        "Patroni 3.0.0 to 3.0.2 can overwrite a newer primary's leader key after a pause",
        ctx.fixes.on(f.name, ['patroni', '--version']),
      );
    }
    if (!s.watchdogDevice.ok) continue;
    if (!s.watchdogDevice.value && required) {
      r.fail(
        'stale-primary',
        f.name,
        `database.watchdog is required, but ${f.name} has no watchdog device (${WATCHDOG_DEVICE})`,
        'Patroni refuses to become primary where it cannot open the watchdog: this machine can never take over',
        `${softdog(f.name)}; or set database.watchdog: off in vigil.yaml and run \`vigil apply\``,
      );
    } else if (!s.watchdogDevice.value) {
      r.warn(
        'stale-primary',
        f.name,
        `${f.name} has no watchdog device (${WATCHDOG_DEVICE}): Patroni runs without one`,
        "a primary whose machine hangs is not reset before its lease runs out; Vigil's agent ends a stale primary once it runs again (and, with Patroni before 3.0.3, holds Patroni's way to etcd closed until it has looked)",
        `${softdog(f.name)}; then set database.watchdog: required in vigil.yaml and run \`vigil apply\``,
      );
    } else if (!required) {
      r.warn(
        'stale-primary',
        f.name,
        `${f.name} has a watchdog device (${WATCHDOG_DEVICE}), but database.watchdog is off`,
        'a primary whose machine hangs is not reset before its lease runs out',
        'set database.watchdog: required in vigil.yaml and run `vigil apply`',
      );
    }
  }
}
