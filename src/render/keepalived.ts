/**
 * keepalived.conf for each proxy machine when the cluster has a floating entry address
 * (`proxy.virtualAddress`), and the check script it runs (keepalived 2.2, Debian 12 and 13).
 *
 * The choices, each for a failure an entry point must survive:
 * - Unicast VRRP between the proxy machines' own addresses (`unicast_src_ip`, `unicast_peer`):
 *   many networks (and every cloud) drop multicast, and the peers are known from the cluster file.
 * - Every instance starts as BACKUP with `nopreempt` and a distinct priority (the first proxy
 *   machine highest): the first election is decided by priority, and a proxy that comes back
 *   does not take the address from the one serving, which would break the connections made
 *   through it for nothing. Two MASTERs that hear each other again (a healed partition) settle by
 *   priority; `nopreempt` concerns only a BACKUP.
 * - A track script with no weight: when this machine's HAProxy does not answer HTTP on its stats
 *   port (dead, hung, or listening nowhere) for `fall` checks in a row, the instance goes to FAULT,
 *   drops the address and sends a priority-0 advertisement, so a BACKUP whose HAProxy answers
 *   takes it at once instead of after three missed advertisements. The machine's own death is
 *   covered by VRRP itself (the advertisements stop).
 * - PASS authentication with the cluster's `vrrpPassword`: VRRPv2 carries 8 characters in clear,
 *   which keeps a misconfigured neighbour (another group on the same router id) out, nothing more.
 * - The address is a /32 on the interface: it never becomes the machine's source address for
 *   its own connections, and no subnet route is added or removed with it.
 */
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { PATHS } from '../layout/paths.ts';
import { VigilError, problem } from '../util/errors.ts';
import { HEADER, type RenderedFile } from './file.ts';

/** VRRPv2's authentication field holds 8 bytes; keepalived truncates a longer password with a warning. */
export const VRRP_AUTH_LENGTH = 8;

/** The name of the VRRP instance and of the check, as keepalived logs them. */
export const VRRP_INSTANCE = 'vigil_entry';
export const VRRP_CHECK = 'vigil_haproxy';

/** Priority of the n-th proxy machine (cluster order): 150, 140, ... (255 is reserved for an address owner, 0 for "leaving"). */
export const vrrpPriority = (index: number): number => 150 - 10 * index;

/** The health check's timing: checked every second, 2 failures in a row release the address, 2 passes make the machine eligible again. */
export const VRRP_CHECK_TIMING = { intervalSeconds: 1, timeoutSeconds: 2, fall: 2, rise: 2 } as const;

/** Whether this cluster runs keepalived: a floating address is configured. */
export const runsKeepalived = (cluster: Cluster, m: Pick<Machine, 'roles'>): boolean => cluster.proxy.virtualAddress !== undefined && m.roles.includes('proxy');

/** The part of the VRRP password keepalived uses; the caller never prints it. */
export function vrrpAuth(cluster: Cluster, secrets: Secrets): string {
  const pw = secrets.vrrpPassword;
  if (pw === undefined)
    throw new VigilError('SECRETS_INVALID', [
      problem(
        `${cluster.secretsFile} vrrpPassword`,
        `proxy.virtualAddress is set in ${cluster.source} but the secrets file has no vrrpPassword: keepalived's VRRP needs a password shared by the proxy machines`,
        'add `vrrpPassword: <8 or more random letters and digits>` to the secrets file (e.g. the output of `openssl rand -hex 8`)',
      ),
    ]);
  return pw.slice(0, VRRP_AUTH_LENGTH);
}

/** `head { ... }` with its lines indented; blocks nest. */
const block = (head: string, lines: string[]): string[] => [`${head} {`, ...lines.map((l) => `    ${l}`), '}'];

/** The keepalived.conf text of one proxy machine. Holds the VRRP password (first 8 characters): mode 600. */
export function keepalivedConfig(cluster: Cluster, secrets: Secrets, machine: Machine): string {
  const vip = cluster.proxy.virtualAddress;
  if (vip === undefined) throw new Error('keepalivedConfig: the cluster has no proxy.virtualAddress');
  const proxies = withRole(cluster, 'proxy');
  const index = proxies.findIndex((p) => p.name === machine.name);
  if (index < 0) throw new Error(`keepalivedConfig: ${machine.name} is not a proxy machine`);
  const v = cluster.proxy.vrrp;
  const t = VRRP_CHECK_TIMING;
  const peers = proxies.filter((p) => p.name !== machine.name).map((p) => p.address);
  const lines = [
    `# ${HEADER}`,
    ...block('global_defs', [
      // Names this machine in keepalived's logs and notifications.
      `router_id ${machine.name}`,
      // The check runs as root; keepalived then refuses a script that anyone else could change.
      'enable_script_security',
      'script_user root',
    ]),
    '',
    ...block(`vrrp_script ${VRRP_CHECK}`, [
      `script "${PATHS.keepalivedCheck}"`,
      `interval ${t.intervalSeconds}`,
      `timeout ${t.timeoutSeconds}`,
      `fall ${t.fall}`,
      `rise ${t.rise}`,
    ]),
    '',
    ...block(`vrrp_instance ${VRRP_INSTANCE}`, [
      'state BACKUP',
      'nopreempt',
      `interface ${v.interface}`,
      `virtual_router_id ${v.routerId}`,
      `priority ${vrrpPriority(index)}`,
      `advert_int ${v.advertIntervalSeconds}`,
      `unicast_src_ip ${machine.address}`,
      ...(peers.length ? block('unicast_peer', peers) : []),
      ...block('authentication', ['auth_type PASS', `auth_pass ${vrrpAuth(cluster, secrets)}`]),
      ...block('virtual_ipaddress', [`${vip}/32 dev ${v.interface}`]),
      ...block('track_script', [VRRP_CHECK]),
    ]),
  ];
  return lines.join('\n') + '\n';
}

/**
 * The track script: exit 0 only when HAProxy's worker answers an HTTP request on the stats port
 * (loopback) within the deadline. A dead HAProxy refuses the connection; a hung one accepts it in
 * the kernel and never answers, which the deadline turns into a failure. socat comes with the
 * proxy packages (the HAProxy unit's reload uses it).
 */
export function keepalivedCheckScript(cluster: Cluster): string {
  const port = cluster.proxy.statsPort;
  return [
    '#!/bin/sh',
    `# ${HEADER}`,
    "# keepalived's check of this machine's HAProxy (vrrp_script): an HTTP answer from its stats port.",
    `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 2 socat -t 1.5 -T 1.5 - TCP:127.0.0.1:${port},connect-timeout=1 2>/dev/null | head -n 1 | grep -q '^HTTP/1\\.[01] 200'`,
    '',
  ].join('\n');
}

export function renderKeepalived(cluster: Cluster, secrets: Secrets, machine: Machine): RenderedFile[] {
  return [
    { machine: machine.name, path: PATHS.keepalivedConfig, mode: 0o600, owner: 'root:root', content: keepalivedConfig(cluster, secrets, machine) },
    { machine: machine.name, path: PATHS.keepalivedCheck, mode: 0o755, owner: 'root:root', content: keepalivedCheckScript(cluster) },
  ];
}
