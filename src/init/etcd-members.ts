/**
 * Where `vigil init` puts etcd when the answers (or the wizard's custom machines) give no machine
 * the `etcd` role: three members when the cluster has two or more observer machines and a third
 * machine, else one on the observer machine (the seed's layout). docs/topologies.md says why:
 *
 * - With two observer machines (usually the two proxy machines sharing the floating entry
 *   address) the cluster is meant to outlive either of them; one etcd member on either would undo
 *   that. Three members keep a majority when any one machine is lost.
 * - The members go on the observer machines first (they run nothing heavy), then the third on the
 *   first database-only machine (a long-lived machine whose loss already costs a Patroni failover
 *   that needs etcd's other two members, which it has), else the first app machine, else any
 *   other. Never two members on one machine: a member is a machine.
 * - With one observer machine, one member there, as the seed has: that machine is a single point
 *   of failure whatever etcd does, and three members would only add disk writes elsewhere.
 */
import type { Role } from '../config/schema.ts';

export interface MachineRoles {
  name: string;
  roles: Role[];
}

export interface EtcdPlacement {
  /** The machines that get the `etcd` role, in the order chosen. */
  members: string[];
  /** One line for the user: where and why. */
  why: string;
}

/** The default placement, or undefined when some machine already has the role (the user chose) or there is no machine to place it on. */
export function defaultEtcdMembers(machines: MachineRoles[]): EtcdPlacement | undefined {
  if (machines.length === 0 || machines.some((m) => m.roles.includes('etcd'))) return undefined;
  const observers = machines.filter((m) => m.roles.includes('observer'));
  if (observers.length >= 2 && machines.length >= 3) {
    const dbOnly = machines.filter((m) => m.roles.includes('db') && !m.roles.includes('app') && !m.roles.includes('observer'));
    const app = machines.filter((m) => m.roles.includes('app') && !m.roles.includes('observer'));
    const rest = machines.filter((m) => !m.roles.includes('observer'));
    const order = [...observers, ...dbOnly, ...app, ...rest];
    const members = [...new Set(order.map((m) => m.name))].slice(0, 3);
    return {
      members,
      why: `etcd: 3 members, on ${members.join(', ')}: two observer machines and a third machine, so etcd keeps its majority when any one of them is lost (docs/topologies.md)`,
    };
  }
  const one = observers[0] ?? machines[0]!;
  return {
    members: [one.name],
    why: `etcd: 1 member, on ${one.name}${observers.length ? ' (the observer machine, as in the presets)' : ''}; with two observer machines and a third machine it would be 3 (docs/topologies.md)`,
  };
}
