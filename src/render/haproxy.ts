/**
 * haproxy.cfg for each proxy machine (HAProxy 2.6), in the seed's shapes, with what the seed
 * gets wrong fixed:
 * - The seed checks the app servers with a plain TCP connect to :80, which passes whenever nginx
 *   listens, whether the application behind it works or not. Here it is an HTTP check of the
 *   agent's role endpoint over mutual TLS (appCheck).
 * - The seed balances the app round-robin over master and slave: two app nodes serving at once.
 *   Here `balance first` sends everything to the first server that is up.
 * - The seed's postgres checks run every 3 s with fall 3 (9 s before a dead primary leaves the
 *   pool); here they follow the cluster's timers (default 1 s x 2).
 * HAProxy runs in the foreground in master-worker mode (`-Ws` under systemd, `-W -db` in the
 * lab), so there is no `daemon` here; reloads re-execute the master and hand the listening
 * sockets to the new worker through the stats socket (`expose-fd listeners`): no refused
 * connection during a reload.
 */
import { APP_BACKEND, POSTGRES_BACKEND } from '../layout/network.ts';
import type { Cluster, Machine } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { PATHS } from '../layout/paths.ts';
import { AGENT_PORT } from '../layout/network.ts';
import { appPort, backendTls } from '../layout/backend.ts';
import { HEADER, type RenderedFile } from './file.ts';
import { PG_MAX_CONNECTIONS } from './patroni.ts';

/**
 * On a reload the old worker would close its idle keep-alive connections at once, and a request
 * a client sends on one at that moment fails (seen in the lab: one failed request in some
 * reloads). With this option the old worker waits for that request, answers it with
 * `Connection: close`, and the client's next request reaches the new worker.
 */
const IDLE_CLOSE = 'option idle-close-on-response';

/** A server state file that holds no server: its format version line only. */
export const EMPTY_SERVER_STATE = '1\n';

/** Connections HAProxy opens to one PostgreSQL server; more wait in HAProxy's queue. */
export const PROXY_PG_MAXCONN = Math.floor(PG_MAX_CONNECTIONS * 0.75);

/**
 * How HAProxy decides an app server may receive traffic: the agent's role endpoint, which answers
 * 200 only while its machine is active at the current epoch and the application passes its own
 * health check (the seed's TCP check on :80 passes whenever nginx listens). The check is HTTPS
 * with HAProxy's own client certificate, since the agent accepts only cluster certificates.
 */
export function appCheck(_cluster: Cluster): { method: string; path: string; port: number; caFile: string; crtFile: string } {
  return { method: 'GET', path: '/role', port: AGENT_PORT, caFile: `${PATHS.pkiDir}/ca.pem`, crtFile: PATHS.haproxyCheckBundle };
}

/**
 * One app server line. The TLS settings of a server line serve both its traffic and its check, so
 * with `application.backendTls` one CA file verifies both the agent's certificate (role check)
 * and nginx's (traffic): the cluster CA, or the operator's CA with the cluster CA appended (apply
 * writes it so). `verifyhost` compares the machine's name with the certificate's DNS names (or
 * its CN): HAProxy never matches an IP address, so the name, not the address, is what is checked.
 */
function appServer(cluster: Cluster, m: Machine): string {
  const check = appCheck(cluster);
  const tls = backendTls(cluster);
  const head = `server ${m.name} ${m.address}:${appPort(cluster)}`;
  const checkPart = `check port ${check.port} check-ssl`;
  if (!tls) return `${head} ${checkPart} verify required ca-file ${check.caFile} crt ${check.crtFile}`;
  // verify none (written by the operator): the agent's certificate goes unchecked too.
  if (!tls.verify) return `${head} ssl verify none crt ${check.crtFile} ${checkPart}`;
  return `${head} ssl verify required ca-file ${tls.caFile} verifyhost ${m.name} crt ${check.crtFile} ${checkPart}`;
}

const indent = (lines: string[]) => lines.map((l) => (l === '' || l.startsWith('#') ? l : `    ${l}`));

function section(title: string, lines: string[]): string {
  return [title, ...indent(lines)].join('\n');
}

/** The haproxy.cfg text. No secret is in it. */
export function haproxyConfig(cluster: Cluster): string {
  const t = cluster.timers;
  const p = cluster.proxy;
  const db = cluster.database;
  const check = appCheck(cluster);
  // The shared health-check timing: a server is out after fall x inter, back after rise x inter.
  // on-marked-down shutdown-sessions cuts the open connections of a server marked down, so
  // clients reconnect to the new one instead of waiting on a dead or demoted node.
  // fastinter (a server going down) and downinter (a server that is down) check four times as
  // often: a failing server leaves sooner and a new primary or active node is found sooner,
  // while healthy servers are checked at the normal rate.
  const quick = t.proxyQuickCheckIntervalMs ?? Math.max(100, Math.round(t.proxyCheckIntervalMs / 4));
  const defaultServer = `default-server inter ${t.proxyCheckIntervalMs}ms fastinter ${quick}ms downinter ${quick}ms fall ${t.proxyFallCount} rise ${t.proxyRiseCount} on-marked-down shutdown-sessions`;

  const parts: string[] = [
    `# ${HEADER}`,
    section('global', [
      'maxconn 4096',
      // The master stays root (it binds :80/:443 and re-executes itself on reload); the
      // workers that handle traffic run unprivileged.
      'user haproxy',
      'group haproxy',
      // Logs to stderr: journald on a real machine, the lab's log file otherwise.
      'log stderr format short local0 info',
      `stats socket ${PATHS.haproxySocket} mode 600 level admin expose-fd listeners`,
      // Saved by the unit's reload (src/render/systemd.ts) and read by the new worker.
      `server-state-file ${PATHS.haproxyState}`,
      'stats timeout 30s',
      // After a reload the old worker keeps its open sessions; never longer than this, so no
      // long-lived database session survives on a configuration that is no longer current.
      'hard-stop-after 30s',
    ]),
    section('defaults', [
      'log global',
      'mode tcp',
      'option dontlognull',
      'load-server-state-from-file global',
      'retries 2',
      'timeout connect 3s',
      'timeout client 1m',
      'timeout server 1m',
      // A check that does not answer within one interval counts as failed.
      `timeout check ${t.proxyCheckIntervalMs}ms`,
    ]),
    // HAProxy's own Prometheus exporter (built in since 2.4, USE_PROMEX) on the stats port's /metrics (docs/metrics.md).
    section(`listen stats`, [
      'mode http',
      `bind *:${p.statsPort}`,
      'http-request use-service prometheus-exporter if { path /metrics }',
      'stats enable',
      'stats uri /',
      'stats refresh 5s',
      'stats show-legends',
    ]),
    section('frontend http_front', [
      `bind *:${p.httpPort}`,
      'mode http',
      'option httplog',
      'option forwardfor',
      'timeout http-request 10s',
      IDLE_CLOSE,
      `default_backend ${APP_BACKEND}`,
    ]),
  ];
  if (p.tlsBundle) {
    parts.push(
      section('frontend https_front', [
        `bind *:${p.httpsPort} ssl crt ${p.tlsBundle}`,
        'mode http',
        'option httplog',
        'option forwardfor',
        'timeout http-request 10s',
        IDLE_CLOSE,
        'http-request set-header X-Forwarded-Proto https',
        `default_backend ${APP_BACKEND}`,
      ]),
    );
  }
  parts.push(
    section(`backend ${APP_BACKEND}`, [
      'mode http',
      // Only one app node may serve at a time. `balance first` gives every request to the first
      // server (in the order below) that is up; without a per-server maxconn it never spills to
      // the next one. And only the active node passes the agent's role check at all.
      'balance first',
      // HTTP/1.1 with a Host header: a bare HTTP/1.0 check reaches the app without a Host,
      // which Node's HTTP server answers with 400 before the application sees it.
      'option httpchk',
      `http-check send meth ${check.method} uri ${check.path} ver HTTP/1.1 hdr Host vigil-check`,
      'http-check expect status 200',
      defaultServer,
      // `disabled`: a HAProxy that starts without saved state (first start, a restart after a
      // crash: systemd's ExecStartPre empties the state file) has every app server in MAINT, not
      // UP before its first check (seen by `vigil lab chaos`: both machines UP for 50 to 100 ms).
      // The observer readies the active machine's server (decide's fencing). A reload keeps the
      // runtime state: the state file then carries the config's MAINT flag (CMAINT) beside the
      // runtime one (FMAINT), and HAProxy restores a readied server as ready.
      ...withRole(cluster, 'app').map((m) => `${appServer(cluster, m)} disabled`),
    ]),
    section(`listen ${POSTGRES_BACKEND}`, [
      `bind *:${p.postgresPort}`,
      'mode tcp',
      // Database sessions are long and often idle (connection pools).
      'timeout client 30m',
      'timeout server 30m',
      'timeout queue 10s',
      'option clitcpka',
      'option srvtcpka',
      // Patroni answers 200 on /primary on the member holding the leader lock, a few ms before
      // PostgreSQL has left recovery after a promotion; its body's `role` comes from PostgreSQL
      // itself (pg_is_in_recovery). Both must hold, or a write could land in that read-only window.
      'option httpchk',
      'http-check send meth GET uri /primary ver HTTP/1.1 hdr Host vigil-check',
      'http-check expect status 200',
      'http-check expect rstring \\"role\\":\\ ?\\"(primary|master)\\"',
      defaultServer,
      // The check speaks TLS to Patroni's REST API (check-ssl: the check only; the database
      // traffic itself stays TCP passed through), trusting the cluster CA only and requiring the
      // member's own name in its certificate: a machine that took the member's address cannot
      // answer 200 for it.
      ...withRole(cluster, 'db').map(
        (m: Machine) =>
          `server ${m.name} ${m.address}:${db.port} maxconn ${PROXY_PG_MAXCONN} check port ${db.patroniPort} check-ssl verify required ca-file ${PATHS.clusterCaCert} check-sni ${m.name} verifyhost ${m.name}`,
      ),
    ]),
  );
  return parts.join('\n\n') + '\n';
}

export function renderHaproxy(cluster: Cluster, machine: Machine): RenderedFile {
  return { machine: machine.name, path: PATHS.haproxyConfig, mode: 0o644, owner: 'root:root', content: haproxyConfig(cluster) };
}
