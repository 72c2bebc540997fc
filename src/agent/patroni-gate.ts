/**
 * A kernel-kept lease on a db machine's Patroni, for the Patroni versions that overwrite a newer
 * leader's key when they resume from a pause (3.0.0 to 3.0.2; see db-fence.ts).
 *
 * The agent's fence looks every 500 ms, but when the whole machine stalls (every process paused,
 * the agent too) and resumes, Patroni acts within milliseconds, before the agent can look. So two
 * ways out of and into Patroni pass only while the agent keeps renewing a lease:
 * - Patroni's packets to etcd's client port (its own user, `meta skuid`): it cannot write its
 *   leader key with a stale view;
 * - packets to Patroni's REST port: HAProxy's `/primary` check cannot mark this machine up, nor a
 *   replica's probe count it as a live primary, on the word of a Patroni that has not been
 *   looked at.
 * The agent renews the lease only after a look, with a fresh answer from etcd, found no stale
 * primary. Both limits are the kernel's, not a process's: a set element's timeout (monotonic), and
 * a wall-clock deadline written into the rules at the time of the look, so a renewal that was
 * itself held up by the stall (its nft process paused before it committed) opens nothing. After
 * every process of the machine has stood still for longer than the lease, Patroni's writes are
 * refused (TCP reset) until the agent has looked and ended the stale primary.
 *
 * The lease is shorter than Patroni's own (ttl - loop_wait): no other member can have taken the
 * leader key before it closes. What it costs: an agent that dies or hangs without stopping closes
 * the gate a lease later; the primary there cannot reach etcd, demotes itself, and the synchronous
 * standby takes over. A clean stop of the agent removes the gate first.
 *
 * Not covered: a virtual machine paused by its hypervisor stops the guest's clocks with it, so
 * neither limit runs out during the pause; only a Patroni that writes its key in a transaction
 * (3.0.3 and later) is safe there (failure-semantics.md).
 */
import { run } from '../util/exec.ts';

/** The nftables table, one per machine (the lab's machines each have their own network namespace). */
export const GATE_TABLE = 'vigil_patroni_gate';

export interface GateOptions {
  /** The system user Patroni runs as. */
  user: string;
  /** etcd's client port. */
  etcdPort: number;
  /** Patroni's REST API port. */
  restPort: number;
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

const checkPort = (name: string, port: number) => {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`Patroni gate: invalid ${name} ${port}`);
};

/**
 * The whole table, open for one lease counted from `decidedAtMs` (wall-clock ms of the look that
 * allowed it), recreated in one transaction: installing and renewing are the same script.
 */
export function gateScript(o: Pick<GateOptions, 'user' | 'etcdPort' | 'restPort' | 'leaseMs'>, decidedAtMs: number): string {
  if (!/^[a-z_][a-z0-9_-]*$/.test(o.user)) throw new RangeError(`Patroni gate: invalid user name ${JSON.stringify(o.user)}`);
  checkPort('etcd port', o.etcdPort);
  checkPort('REST port', o.restPort);
  // Whole seconds (nftables' resolution), rounded down: never later than the look plus the lease.
  const deadline = Math.floor((decidedAtMs + o.leaseMs) / 1000);
  const timeout = nftDuration(Math.max(1, decidedAtMs + o.leaseMs - Date.now()));
  const closed = (port: number) => [
    `tcp dport ${port} tcp dport != @lease reject with tcp reset`,
    `tcp dport ${port} meta time > ${deadline} reject with tcp reset`,
  ];
  return [
    `add table inet ${GATE_TABLE}`,
    `delete table inet ${GATE_TABLE}`,
    `table inet ${GATE_TABLE} {`,
    '  set lease {',
    '    type inet_service',
    '    flags timeout',
    `    elements = { ${o.etcdPort} timeout ${timeout}, ${o.restPort} timeout ${timeout} }`,
    '  }',
    '  chain output {',
    '    type filter hook output priority 0; policy accept;',
    ...closed(o.etcdPort).map((r) => `    meta skuid "${o.user}" ${r}`),
    '  }',
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    ...closed(o.restPort).map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

export class PatroniGate {
  private readonly nft: (script: string) => Promise<void>;

  constructor(private readonly o: GateOptions) {
    this.nft = o.nft ?? defaultNft;
  }

  /** Opens the gate for one lease from `decidedAtMs` (wall clock), the time of the look that allows it. */
  renew(decidedAtMs: number = Date.now()): Promise<void> {
    return this.nft(gateScript(this.o, decidedAtMs));
  }

  /** Removes the gate: Patroni's ways are free again (a clean stop of the agent). */
  remove(): Promise<void> {
    return this.nft(`add table inet ${GATE_TABLE}\ndelete table inet ${GATE_TABLE}\n`);
  }
}
