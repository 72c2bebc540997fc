/**
 * The commands doctor's findings give as fixes. They differ by platform: on real machines they
 * are shell commands to run on the machine named (systemd units, firewall) or `vigil` commands
 * for the admin's shell (systemdFixes); in the lab they are the same commands through `vigil lab
 * exec`, or `vigil lab` commands (src/lab/fixes.ts, supplied by a checkout). No fix ever carries
 * a secret.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { UNITS } from '../layout/units.ts';
import type { Component } from './expect.ts';
import type { PlatformKind } from './types.ts';

/** Quotes an argument for a POSIX shell when it needs it, so a printed command can be pasted. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

export const commandLine = (argv: string[]): string => argv.map(shellQuote).join(' ');

export type Firewall = 'firewalld' | 'ufw' | 'none';

/** Something that runs (or must not) on a machine, for start and stop fixes. */
export type Startable = Component | 'observer';

export interface Fixes {
  readonly platform: PlatformKind;
  /** A command to run on one machine. */
  on(machine: string, argv: string[]): string;
  /** An operator command (`vigil status`, `vigil failover` ...) for the admin's shell. */
  vigil(args: string[]): string;
  /** The machine does not run commands at all. */
  unreachable(machine: Machine): string;
  /** Start something that should run and does not. */
  start(machine: string, what: Startable): string;
  /** End a process that must not run there (e.g. nginx on a standby); `unit` when systemd runs it. */
  stopStray(machine: string, proc: { name: string; pid: number; unit: string | null }): string;
  /** Stop one of the application's services (cluster file `application.services`). */
  stopService(machine: string, service: { name: string; unit: string }): string;
  /** Let `fromAddresses` reach TCP `port` on `machine`. */
  openPort(machine: string, port: number, fromAddresses: string[], firewall: Firewall | null): string;
  /** Put back what `vigil apply` installs (certificates, configuration). */
  reinstall(machine: string, what: string): string;
  /** Make the database password in an application config file the secrets file's again. */
  setPassword(machine: string, file: { path: string; key: string }): string;
  /** Put the machine's clock right (NTP). */
  syncClock(machine: string): string;
}

const UNIT_OF: Record<Startable, string> = {
  etcd: UNITS.etcd,
  patroni: UNITS.patroni,
  haproxy: UNITS.haproxy,
  agent: UNITS.agent,
  observer: UNITS.observer,
  nginx: UNITS.nginx,
  sshd: 'ssh.service',
};

/** Fixes for machines run by systemd, reached over SSH by the administrator. */
export function systemdFixes(cluster: Cluster): Fixes {
  const file = shellQuote(cluster.source);
  const applyCmd = `vigil apply -c ${file}`;
  return {
    platform: 'systemd',
    on: (machine, argv) => `on ${machine}: ${commandLine(argv)}`,
    vigil: (args) => `vigil ${commandLine(args)} -c ${file}`,
    syncClock: (machine) => `on ${machine}: timedatectl set-ntp true`,
    unreachable: (m) => `bring ${m.name} up and check that it answers SSH from here: ssh -p ${m.sshPort} ${m.sshUser}@${m.address} true`,
    start(machine, what) {
      // nginx runs only on the active machine, started by the agent once it confirmed its role.
      if (what === 'nginx')
        return `on ${machine}: systemctl restart ${UNITS.agent} (the agent starts nginx and the application on the active machine; \`journalctl -u ${UNITS.agent} -n 50\` says why it did not)`;
      return `on ${machine}: systemctl start ${UNIT_OF[what]} (\`journalctl -u ${UNIT_OF[what]} -n 50\` says why it stopped)`;
    },
    stopStray(machine, proc) {
      if (proc.unit) return `on ${machine}: systemctl disable --now ${shellQuote(proc.unit)}`;
      return `on ${machine}: kill ${proc.pid} (${proc.name}, started outside systemd)`;
    },
    stopService: (machine, service) => `on ${machine}: systemctl stop ${shellQuote(service.unit)}`,
    openPort(machine, port, from, firewall) {
      if (firewall === 'firewalld') {
        return `on ${machine}: ${from.map((a) => `firewall-cmd --permanent --add-rich-rule='rule family=ipv4 source address=${a} port port=${port} protocol=tcp accept'`).join(' && ')} && firewall-cmd --reload`;
      }
      if (firewall === 'ufw') return `on ${machine}: ${from.map((a) => `ufw allow from ${a} to any port ${port} proto tcp`).join(' && ')}`;
      return `on ${machine}: find the rule that drops TCP port ${port} with \`nft list ruleset\` (and any firewall between the machines) and allow it from ${from.join(', ')}`;
    },
    reinstall: (machine, what) => `${applyCmd} (installs ${what} on ${machine} again)`,
    setPassword: (machine, f) =>
      `${applyCmd} (writes the secrets file's appDbPassword into ${f.key} of ${f.path} on ${machine} and every other file application.passwordFiles lists)`,
  };
}
