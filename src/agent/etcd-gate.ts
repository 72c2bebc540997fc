/**
 * A kernel-kept lease on Patroni's way to etcd, for the Patroni versions that overwrite a new
 * leader's key when they resume from a pause (3.0.0 to 3.0.2; see db-fence.ts).
 *
 * The agent's fence looks every 250 ms, but when the whole machine stops (every process paused,
 * the agent too) and resumes, Patroni acts within milliseconds, before the agent can look. So
 * Patroni's packets to etcd's client port (its own user, `meta skuid`) pass only while an nftables
 * set holds an element whose timeout the agent renews after each look that found no stale
 * primary. The timeout runs in the kernel, not in a process: once every process of the machine
 * has stood still for longer than the lease, the gate is closed when they resume, Patroni's writes
 * are refused (TCP reset), and the agent's next look ends it before the gate opens again.
 *
 * The lease is shorter than Patroni's own (ttl - loop_wait): no other member can have taken the
 * leader key before the gate closes. What it costs: an agent that dies without stopping (a crash,
 * SIGKILL) closes Patroni's way to etcd a lease later; the primary there demotes itself and the
 * synchronous standby takes over. A clean stop of the agent removes the gate first.
 *
 * Not covered: a virtual machine paused by its hypervisor stops the guest kernel's clock with it,
 * so the lease does not run out; only a Patroni that writes its key in a transaction (3.0.3 and
 * later) is safe there (failure-semantics.md).
 */
import { run } from '../util/exec.ts';

/** The nftables table, one per machine (the lab's machines each have their own network namespace). */
export const GATE_TABLE = 'vigil_patroni_gate';

export interface GateOptions {
  /** The system user Patroni runs as. */
  user: string;
  /** etcd's client port. */
  port: number;
  /** How long one renewal keeps the gate open. */
  leaseMs: number;
  /** Runs `nft -f -` with a script; throws when nft refuses it. */
  nft?: (script: string) => Promise<void>;
}

const defaultNft = async (script: string): Promise<void> => {
  await run('nft', ['-f', '-'], { input: script, timeoutMs: 5000 });
};

/** nftables' time format: "5s500ms". */
export function nftDuration(ms: number): string {
  const whole = Math.max(1, Math.round(ms));
  const s = Math.floor(whole / 1000);
  const rest = whole % 1000;
  return `${s ? `${s}s` : ''}${rest ? `${rest}ms` : ''}`;
}

/** The whole table, recreated in one transaction (a second install replaces the first). */
export function gateScript(o: Pick<GateOptions, 'user' | 'port' | 'leaseMs'>): string {
  if (!/^[a-z_][a-z0-9_-]*$/.test(o.user)) throw new RangeError(`etcd gate: invalid user name ${JSON.stringify(o.user)}`);
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new RangeError(`etcd gate: invalid port ${o.port}`);
  return [
    `add table inet ${GATE_TABLE}`,
    `delete table inet ${GATE_TABLE}`,
    `table inet ${GATE_TABLE} {`,
    '  set lease {',
    '    type inet_service',
    '    flags timeout',
    '  }',
    '  chain output {',
    '    type filter hook output priority 0; policy accept;',
    `    meta skuid "${o.user}" tcp dport ${o.port} tcp dport != @lease reject with tcp reset`,
    '  }',
    '}',
    renewScript(o),
  ].join('\n');
}

/** Puts the element back with a fresh timeout, in one transaction: `add` makes sure it exists, so `delete` cannot fail. */
export function renewScript(o: Pick<GateOptions, 'port' | 'leaseMs'>): string {
  const el = `${o.port} timeout ${nftDuration(o.leaseMs)}`;
  return [`add element inet ${GATE_TABLE} lease { ${el} }`, `delete element inet ${GATE_TABLE} lease { ${o.port} }`, `add element inet ${GATE_TABLE} lease { ${el} }`].join('\n') + '\n';
}

export class EtcdGate {
  private readonly nft: (script: string) => Promise<void>;

  constructor(private readonly o: GateOptions) {
    this.nft = o.nft ?? defaultNft;
  }

  /** Installs the gate, open for one lease. */
  install(): Promise<void> {
    return this.nft(gateScript(this.o));
  }

  /** Keeps it open for one more lease from now. */
  renew(): Promise<void> {
    return this.nft(renewScript(this.o));
  }

  /** Removes the gate: Patroni's way to etcd is free again (a clean stop of the agent). */
  remove(): Promise<void> {
    return this.nft(`add table inet ${GATE_TABLE}\ndelete table inet ${GATE_TABLE}\n`);
  }
}
