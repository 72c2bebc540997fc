/**
 * What the "Now" page shows, from `vigil status --json`'s ClusterStatus (src/ops/status.ts): named
 * status tiles and the machine table with the CLI's columns, and the Actions page's pre-flight
 * data (src/dashboard/actions.ts). Pure; the browser only draws it.
 */
import { machineColumns, type ClusterStatus, type MachineColumns } from '../ops/status.ts';
import { actionsView, type ActionsView } from './actions.ts';

export type Level = 'ok' | 'warn' | 'bad';

export interface Tile {
  id: 'active' | 'database' | 'observer' | 'maintenance' | 'filesync';
  label: string;
  /** The tile's headline, e.g. `app2 at epoch 7`. */
  value: string;
  detail: string;
  level: Level;
}

export interface NowView {
  cluster: string;
  tiles: Tile[];
  machines: MachineColumns[];
  /** What the Actions page shows and its forms carry (the epoch). */
  actions: ActionsView;
}

export function nowView(s: ClusterStatus): NowView {
  return {
    cluster: s.cluster,
    tiles: [activeTile(s), databaseTile(s), observerTile(s), maintenanceTile(s), fileSyncTile(s)],
    machines: s.machines.map(machineColumns),
    actions: actionsView(s),
  };
}

function activeTile(s: ClusterStatus): Tile {
  const label = 'Active app machine';
  if (!s.active) return { id: 'active', label, value: 'none yet', detail: 'no machine has been made active', level: 'bad' };
  const agent = s.machines.find((m) => m.name === s.active!.node)?.agent;
  const detail = `since ${s.active.since}: ${s.active.reason}`;
  if (!agent)
    return { id: 'active', label, value: `${s.active.node} at epoch ${s.active.epoch}`, detail: `its agent does not answer; ${detail}`, level: 'bad' };
  const healthy = agent.active && agent.appHealthy;
  return {
    id: 'active',
    label,
    value: `${s.active.node} at epoch ${s.active.epoch}`,
    detail: healthy ? detail : `${agent.active ? 'the application is unhealthy' : 'its agent is not active yet'}; ${detail}`,
    level: healthy ? 'ok' : 'warn',
  };
}

function databaseTile(s: ClusterStatus): Tile {
  const label = 'Database primary';
  const dbs = s.machines.filter((m) => m.roles.includes('db'));
  const primary = dbs.find((m) => m.agent?.patroni && ['leader', 'master', 'primary'].includes(m.agent.patroni.role));
  const replicas = dbs.filter((m) => m !== primary);
  const lags = replicas.map((m) => `${m.name} ${m.agent?.patroni ? `${m.agent.patroni.state}, lag ${m.agent.patroni.lagBytes ?? '?'} B` : 'unknown'}`);
  if (!primary) return { id: 'database', label, value: 'none', detail: lags.join('; ') || 'no db machine answers', level: 'bad' };
  const unhealthy = replicas.some((m) => !m.agent?.patroni || !['running', 'streaming'].includes(m.agent.patroni.state));
  return {
    id: 'database',
    label,
    value: primary.name,
    detail: lags.length ? `replicas: ${lags.join('; ')}` : 'no replica',
    level: unhealthy || !lags.length ? 'warn' : 'ok',
  };
}

function observerTile(s: ClusterStatus): Tile {
  const label = 'Observer';
  if (!s.observerLeader) return { id: 'observer', label, value: 'no leader', detail: 'no observer is acting: nothing fails over', level: 'bad' };
  const os = s.observerState;
  const state = os?.state ?? 'not written yet';
  return {
    id: 'observer',
    label,
    value: `${s.observerLeader.host}: ${state}`,
    detail: os ? `since ${os.since}: ${os.reason}` : `leads since ${s.observerLeader.since}`,
    level: state === 'healthy' ? 'ok' : 'warn',
  };
}

function maintenanceTile(s: ClusterStatus): Tile {
  const label = 'Maintenance';
  if (!s.maintenance) return { id: 'maintenance', label, value: 'off', detail: 'the observer fails over when the active machine fails', level: 'ok' };
  return {
    id: 'maintenance',
    label,
    value: 'ON',
    detail: `since ${s.maintenance.since} by ${s.maintenance.by}: ${s.maintenance.reason}; no failover`,
    level: 'warn',
  };
}

function fileSyncTile(s: ClusterStatus): Tile {
  const label = 'File sync';
  const pushing = s.machines.find((m) => m.agent?.sync?.role === 'pushing');
  if (!pushing) {
    const hasSync = s.machines.some((m) => m.agent?.sync);
    return {
      id: 'filesync',
      label,
      value: hasSync ? 'no machine pushes' : 'not reported',
      detail: 'the active machine carries the files',
      level: hasSync ? 'warn' : 'ok',
    };
  }
  const peers = pushing.agent!.sync!.peers;
  const failing = peers.filter((p) => p.error);
  const backlog = peers.reduce((n, p) => n + p.backlog, 0);
  const lagMs = Math.max(0, ...peers.map((p) => p.lagMs));
  const detail = peers
    .map((p) => `${p.node}: ${p.error ? `FAILING since ${p.error.since}: ${p.error.message}` : `backlog ${p.backlog}, oldest change ${p.lagMs} ms`}`)
    .join('; ');
  return {
    id: 'filesync',
    label,
    value: failing.length ? `failing to ${failing.map((p) => p.node).join(', ')}` : backlog ? `backlog ${backlog}` : 'in sync',
    detail: `${pushing.name} pushes; ${detail || 'no standby'}`,
    level: failing.length ? 'bad' : lagMs > 60_000 ? 'warn' : 'ok',
  };
}
