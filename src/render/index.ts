/**
 * Rendering: from the cluster (and its secrets) to every file each machine needs. Pure: nothing
 * here touches the disk; `vigil render` writes the result, the installer copies it to machines.
 *
 * What each role gets:
 *   etcd      /etc/vigil/etcd.yml, vigil-etcd.service
 *   db        /etc/vigil/patroni.yml, vigil-patroni.service, vigil-agent.service
 *   proxy     /etc/vigil/haproxy.cfg, vigil-haproxy.service; with proxy.virtualAddress also
 *             /etc/vigil/keepalived.conf, keepalived-check.sh, vigil-keepalived.service
 *   app       /etc/vigil/nginx.conf, the reference app's properties, vigil-nginx.service, vigil-agent.service
 *   observer  vigil-observer.service
 * (A machine with both app and db gets one vigil-agent.service; units: src/render/systemd.ts.)
 */
import type { Cluster, Secrets } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { VigilError, problem, type Problem } from '../util/errors.ts';
import { renderEtcd } from './etcd.ts';
import { renderHaproxy } from './haproxy.ts';
import { renderKeepalived, runsKeepalived } from './keepalived.ts';
import { renderNginx } from './nginx.ts';
import { PATRONI_DEFAULT_VERSION, renderPatroni, timerProblems } from './patroni.ts';
import { renderRefapp, renderRefappSettings, runsRefapp } from './refapp.ts';
import { renderUnits } from './systemd.ts';
import type { RenderedFile } from './file.ts';

export type { RenderedFile } from './file.ts';
export { appDatabaseSql, scramVerifier, type SqlStep } from './appdb.ts';
export { checkTlsBundle, createSelfSignedBundle } from './tls.ts';
export { appCheck, haproxyConfig } from './haproxy.ts';
export { patroniConfig, patroniKeyPrefix, patroniNamespace, pgHba, timerProblems } from './patroni.ts';
export { etcdConfig } from './etcd.ts';
export { keepalivedConfig, runsKeepalived, VRRP_INSTANCE, VRRP_AUTH_LENGTH } from './keepalived.ts';
export { renderRefapp, refappProperties, refappTlsEndpoint, renderRefappSettings, runsRefapp, runsRefappAnalytics } from './refapp.ts';
export { COMMANDS } from './systemd.ts';

export interface RenderOptions {
  /** Patroni version on the db machines; 3.2+ has higher timer minimums (see timerProblems). */
  patroniVersion?: string;
}

/** Why this cluster cannot be rendered; empty when it can. */
export function renderProblems(cluster: Cluster, opts: RenderOptions = {}): Problem[] {
  const out = timerProblems(cluster, opts.patroniVersion ?? PATRONI_DEFAULT_VERSION);
  if (withRole(cluster, 'db').length > 0 && withRole(cluster, 'etcd').length === 0) {
    out.push(
      problem(
        `${cluster.source} machines`,
        'there are db machines but no etcd member: Patroni has nowhere to keep its leader lock',
        'give one machine (or 3, 5, 7) the etcd role',
      ),
    );
  }
  if ((withRole(cluster, 'app').length > 0 || withRole(cluster, 'db').length > 0) && withRole(cluster, 'proxy').length === 0) {
    out.push(
      problem(
        `${cluster.source} machines`,
        'no machine has the proxy role: nothing routes users to the app or the app to the database',
        'give a machine the proxy role (usually the observer: etcd, proxy, observer)',
      ),
    );
  }
  return out;
}

function renderChecked(cluster: Cluster, secrets: Secrets, machineName: string): RenderedFile[] {
  const machine = cluster.machines.find((m) => m.name === machineName);
  if (!machine) {
    const names = cluster.machines.map((m) => m.name).join(', ');
    throw new VigilError('USAGE', [problem(machineName, `no machine of this name in ${cluster.source}`, `use one of: ${names}`)]);
  }
  const files: RenderedFile[] = [];
  if (machine.roles.includes('etcd')) files.push(renderEtcd(cluster, machine));
  if (machine.roles.includes('db')) files.push(renderPatroni(cluster, secrets, machine));
  if (machine.roles.includes('proxy')) files.push(renderHaproxy(cluster, machine));
  if (runsKeepalived(cluster, machine)) files.push(...renderKeepalived(cluster, secrets, machine));
  if (machine.roles.includes('app')) files.push(renderNginx(cluster, machine));
  if (runsRefapp(cluster, machine)) {
    files.push(renderRefapp(cluster, secrets, machine));
    const settings = renderRefappSettings(cluster, machine);
    if (settings) files.push(settings);
  }
  files.push(...renderUnits(cluster, machine));
  return files;
}

function assertRenderable(cluster: Cluster, opts: RenderOptions): void {
  const problems = renderProblems(cluster, opts);
  if (problems.length > 0) throw new VigilError('CONFIG_INVALID', problems);
}

/** Every file one machine needs. Throws VigilError when the cluster cannot work as configured. */
export function renderMachine(cluster: Cluster, secrets: Secrets, machineName: string, opts: RenderOptions = {}): RenderedFile[] {
  assertRenderable(cluster, opts);
  return renderChecked(cluster, secrets, machineName);
}

/** Every file of every machine, machines in cluster order. */
export function renderAll(cluster: Cluster, secrets: Secrets, opts: RenderOptions = {}): RenderedFile[] {
  assertRenderable(cluster, opts);
  return cluster.machines.flatMap((m) => renderChecked(cluster, secrets, m.name));
}
