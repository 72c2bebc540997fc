/**
 * The entry point: haproxy.cfg passes `haproxy -c` on every proxy machine, and HAProxy's servers
 * are as the cluster's state says: exactly the active app machine UP in the app backend, exactly
 * the Patroni primary UP behind :5000.
 */
import { PATHS } from '../../layout/paths.ts';
import { withRole } from '../../config/schema.ts';
import type { ServerState } from '../../proxy/runtime.ts';
import { APP_BACKEND } from '../../layout/network.ts';
import type { Results } from '../results.ts';
import { activeNode, reachable, type EvalContext } from './context.ts';

const describe = (s: ServerState | undefined) => (!s ? 'not in the backend' : s.admin !== 'ready' ? s.admin.toUpperCase() : s.op.toUpperCase());

export function checkHaproxy(ctx: EvalContext, r: Results): void {
  const up = reachable(ctx);
  const active = activeNode(ctx);
  const patroni = ctx.facts.cluster.patroni;
  const leader = patroni.ok ? patroni.value.members.filter((m) => m.role === 'leader' || m.role === 'master' || m.role === 'primary') : [];
  for (const proxy of withRole(ctx.cluster, 'proxy')) {
    const f = up.get(proxy.name);
    const cfg = f?.haproxyConfig;
    if (cfg && !cfg.ok)
      r.warn(
        'haproxy',
        proxy.name,
        `haproxy.cfg on ${proxy.name} cannot be checked: ${cfg.error}`,
        'a broken configuration stops HAProxy at its next start or reload',
        ctx.fixes.on(proxy.name, ['haproxy', '-c', '-f', PATHS.haproxyConfig]),
      );
    if (cfg?.ok && !cfg.value.valid) {
      r.fail(
        'haproxy',
        proxy.name,
        `${PATHS.haproxyConfig} on ${proxy.name} does not pass \`haproxy -c\`${cfg.value.output ? `:\n${cfg.value.output}` : ''}`,
        'HAProxy refuses to start or reload with it: after its next restart nobody reaches the application or the database',
        ctx.fixes.reinstall(proxy.name, 'haproxy.cfg and the certificate files it names'),
      );
    }
    const stats = ctx.facts.cluster.haproxy.find((h) => h.machine === proxy.name)?.servers;
    if (!stats) continue;
    if (!stats.ok) {
      r.fail(
        'haproxy',
        proxy.name,
        `HAProxy's stats page on ${proxy.name} (port ${ctx.cluster.proxy.statsPort}) does not answer: ${stats.error}`,
        'HAProxy is down or cut off: users and the application reach nothing',
        ctx.fixes.start(proxy.name, 'haproxy'),
      );
      continue;
    }
    r.ran('haproxy', proxy.name);
    const servers = stats.value;
    const serving = (backend: string) => servers.filter((s) => s.backend === backend && s.admin === 'ready' && s.op === 'up').map((s) => s.server);

    // Vigil's haproxy.cfg checks every app server: one HAProxy does not check has its checks paused.
    for (const s of servers.filter((x) => x.backend === APP_BACKEND && x.admin === 'ready' && x.checks !== 'enabled'))
      r.fail(
        'haproxy',
        proxy.name,
        `HAProxy's health check of ${s.server} is paused on ${proxy.name} (its status is "no check": \`disable health ${APP_BACKEND}/${s.server}\`), as an interrupted \`vigil apply\` or a hand command leaves it`,
        `HAProxy keeps ${s.server} in the state it had and no longer asks its agent whether it is the active machine`,
        `${ctx.fixes.on(proxy.name, ['sh', '-c', `echo 'enable health ${APP_BACKEND}/${s.server}' | socat stdio ${PATHS.haproxySocket}`])} (socat from the distribution's packages), or ${ctx.fixes.reinstall(proxy.name, `HAProxy's health check of ${s.server}`)}`,
      );
    if ('unknown' in active) r.skip('haproxy', proxy.name, `app backend: ${active.unknown}`);
    else if (active.node) {
      const appUp = serving(APP_BACKEND);
      for (const other of appUp.filter((n) => n !== active.node)) {
        r.fail(
          'haproxy',
          proxy.name,
          `HAProxy on ${proxy.name} sends application traffic to ${other}, which is not the active machine (${active.node})`,
          'two machines serving at once: tickets and attachments split between them',
          `${ctx.fixes.vigil(['failover', '--to', active.node])} (fences every other machine: MAINT in HAProxy, services stopped)`,
        );
      }
      if (!appUp.includes(active.node)) {
        const state = describe(servers.find((s) => s.backend === APP_BACKEND && s.server === active.node));
        r.fail(
          'haproxy',
          proxy.name,
          `the active machine ${active.node} is ${state} in HAProxy's app backend on ${proxy.name}`,
          "users get errors (503): no server takes the application's traffic",
          state === 'MAINT'
            ? ctx.fixes.vigil(['failover', '--to', active.node])
            : `its role check (agent port 7710, /role) fails: see the findings of ${active.node}; ${ctx.fixes.start(active.node, 'nginx')}`,
        );
      }
    }
    if (leader.length === 1) {
      const primary = leader[0]!.name;
      const dbUp = serving('postgres');
      for (const other of dbUp.filter((n) => n !== primary)) {
        r.fail(
          'haproxy',
          proxy.name,
          `HAProxy's :${ctx.cluster.proxy.postgresPort} on ${proxy.name} sends connections to ${other}, which is not the Patroni primary (${primary})`,
          'writes sent there fail (a replica is read-only) or land on a diverged former primary and are lost',
          ctx.fixes.on(other, [
            'curl',
            '-s',
            '--cacert',
            PATHS.clusterCaCert,
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}\\n',
            '-X',
            'OPTIONS',
            `https://${ctx.cluster.machines.find((m) => m.name === other)?.address ?? other}:${ctx.cluster.database.patroniPort}/primary`,
          ]) + ' must print 503; if it prints 200, Patroni there believes it is primary: stop it',
        );
      }
      if (!dbUp.includes(primary)) {
        const state = describe(servers.find((s) => s.backend === 'postgres' && s.server === primary));
        r.fail(
          'haproxy',
          proxy.name,
          `the Patroni primary ${primary} is ${state} behind HAProxy's :${ctx.cluster.proxy.postgresPort} on ${proxy.name}`,
          'the application cannot reach its database: every request that writes fails',
          `HAProxy checks https://${primary}:${ctx.cluster.database.patroniPort}/primary (its certificate from the cluster CA, naming ${primary}): see the ports findings of ${primary}; ${ctx.fixes.on(proxy.name, ['curl', '-s', '--cacert', PATHS.clusterCaCert, '-X', 'OPTIONS', '-o', '/dev/null', '-w', '%{http_code}\\n', `https://${ctx.cluster.machines.find((m) => m.name === primary)?.address ?? primary}:${ctx.cluster.database.patroniPort}/primary`])} must print 200`,
        );
      }
    } else if (withRole(ctx.cluster, 'db').length > 0) {
      r.skip('haproxy', proxy.name, ':5000 backend: the Patroni primary is not known');
    }
  }
}
