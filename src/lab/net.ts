/**
 * The lab's machines as Linux namespaces: a network namespace per machine, joined by veth pairs
 * to one bridge that has an address on this host but no route beyond its subnet (IP forwarding
 * stays as it is: the machines have no default route), and each machine's root, an overlay of
 * its release's root filesystem, mounted on this host for systemd-nspawn to boot (boot.ts).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../util/exec.ts';
import { BRIDGE, NETNS_PREFIX, hostRoot, machineRoot, netnsName, vethName } from './paths.ts';
import { BRIDGE_ADDRESS, LAB_PREFIX_LEN } from './topology.ts';

const ip = (...args: string[]) => run('ip', args);
export const inNetns = (host: string, cmd: string, args: string[]) => run('ip', ['netns', 'exec', netnsName(host), cmd, ...args]);

export async function createBridge(): Promise<void> {
  const exists = await run('ip', ['link', 'show', BRIDGE], { allowFail: true });
  if (exists.code !== 0) await ip('link', 'add', BRIDGE, 'type', 'bridge');
  await run('ip', ['addr', 'replace', `${BRIDGE_ADDRESS}/${LAB_PREFIX_LEN}`, 'dev', BRIDGE]);
  await ip('link', 'set', BRIDGE, 'up');
}

export async function createMachineNet(host: string, address: string): Promise<void> {
  const ns = netnsName(host);
  const veth = vethName(host);
  await ip('netns', 'add', ns);
  await ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  await ip('link', 'set', veth, 'master', BRIDGE);
  await ip('link', 'set', veth, 'up');
  await inNetns(host, 'ip', ['link', 'set', 'lo', 'up']);
  await inNetns(host, 'ip', ['addr', 'add', `${address}/${LAB_PREFIX_LEN}`, 'dev', 'eth0']);
  await inNetns(host, 'ip', ['link', 'set', 'eth0', 'up']);
}

/** The IPv4 addresses on a machine's eth0 (its own and any floating one keepalived added), read from this host. */
export async function machineAddresses(host: string): Promise<string[]> {
  const r = await run('ip', ['-n', netnsName(host), '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { allowFail: true });
  if (r.code !== 0) return [];
  return [...r.stdout.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!);
}

/**
 * Removes every address from a machine's eth0 but its own. A powered-off machine's namespace
 * outlives its processes (a revive boots it on the same link), and a floating address keepalived
 * had added would stay on it, still answering ARP beside the machine that took it over; a real
 * machine loses it with its power.
 */
export async function dropFloatingAddresses(host: string, own: string): Promise<void> {
  for (const a of await machineAddresses(host))
    if (a !== own) await run('ip', ['-n', netnsName(host), 'addr', 'del', `${a}/32`, 'dev', 'eth0'], { allowFail: true });
}

/**
 * The machine's root: an overlay of the release's root filesystem (shared, read-only) and an
 * upper layer of its own. It is mounted on this host too, so the lab reads and writes the
 * machine's files from outside (src/lab/paths.ts hostPathOf).
 */
export async function mountOverlay(host: string, lower: string): Promise<void> {
  const root = machineRoot(host);
  const upper = join(hostRoot(host), 'overlay', 'upper');
  const work = join(hostRoot(host), 'overlay', 'work');
  for (const d of [root, upper, work]) await mkdir(d, { recursive: true });
  await run('mount', ['-t', 'overlay', `vigil-lab-${host}`, '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, root]);
}

/** Network namespaces of this lab that exist now, including those left by a crashed run. */
export async function listLabNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX))
    .map((n) => n.slice(NETNS_PREFIX.length));
}

/** Whether any lab (of any VIGIL_LAB_ID) still has a network namespace on this host. */
export async function anyLabNetns(): Promise<boolean> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').some((l) => /^vigil-lab\d?-/.test(l));
}

/** PIDs of every process in a machine's network namespace. */
export async function netnsPids(host: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', netnsName(host)], { allowFail: true });
  if (r.code !== 0) return [];
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** Removes a machine's namespaces and link; each step tolerates a part already gone. */
export async function removeMachine(host: string): Promise<void> {
  await run('ip', ['link', 'del', vethName(host)], { allowFail: true });
  await run('ip', ['netns', 'del', netnsName(host)], { allowFail: true });
  await run('umount', [machineRoot(host)], { allowFail: true });
}

export async function removeBridge(): Promise<void> {
  await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
}

/**
 * Cuts with nftables inside the machine's namespace: dropped packets stall connections as a real
 * partition does (a blackhole route would fail connect() at once, which no real network does).
 * `oneWay` drops only what the peers send to the machine; the machine's own packets still leave.
 */
export async function cutOff(host: string, peers: string[], oneWay: boolean): Promise<void> {
  const lines = [
    'table inet vigil_lab {',
    '  chain input { type filter hook input priority 0; policy accept; }',
    '  chain output { type filter hook output priority 0; policy accept; }',
    '}',
    ...peers.map((p) => `add rule inet vigil_lab input ip saddr ${p} drop`),
    ...(oneWay ? [] : peers.map((p) => `add rule inet vigil_lab output ip daddr ${p} drop`)),
  ];
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', '-f', '-'], { input: lines.join('\n') + '\n' });
}

/**
 * A closed port, as a firewall closes it: TCP connections from other machines to `port` on the
 * machine are dropped (a connect times out); its own loopback traffic still passes, as with
 * ufw or firewalld. Same table as cutOff, so healAll removes it too.
 */
export async function blockPort(host: string, port: number): Promise<void> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`blockPort: ${port} is not a TCP port`);
  const lines = [
    'table inet vigil_lab {',
    '  chain input { type filter hook input priority 0; policy accept; }',
    '  chain output { type filter hook output priority 0; policy accept; }',
    '}',
    `add rule inet vigil_lab input iifname != "lo" tcp dport ${port} drop`,
  ];
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', '-f', '-'], { input: lines.join('\n') + '\n' });
}

/**
 * A partition narrower than a machine's: the machine's connections to `peer`'s TCP `port` are
 * cut both ways (what it sends, and what comes back on them), or only what one of its users
 * (`uid`, as the machine numbers it) sends to `peer` is dropped. E.g. an app machine cut from
 * etcd alone, or the observer's own checks of a machine failing while HAProxy's (another user)
 * still pass, as when the proxy is a machine apart.
 */
export async function dropOutput(host: string, peer: string, match: { port?: number; uid?: number } = {}): Promise<void> {
  if (match.port !== undefined && (!Number.isInteger(match.port) || match.port < 1 || match.port > 65535))
    throw new RangeError(`dropOutput: ${match.port} is not a TCP port`);
  if (match.uid !== undefined && (!Number.isInteger(match.uid) || match.uid < 0)) throw new RangeError(`dropOutput: ${match.uid} is not a user id`);
  const rule = [`ip daddr ${peer}`, match.port === undefined ? '' : `tcp dport ${match.port}`, match.uid === undefined ? '' : `meta skuid ${match.uid}`]
    .filter(Boolean)
    .join(' ');
  const lines = [
    'table inet vigil_lab {',
    '  chain input { type filter hook input priority 0; policy accept; }',
    '  chain output { type filter hook output priority 0; policy accept; }',
    '}',
    `add rule inet vigil_lab output ${rule} drop`,
    // Data the peer sends on connections already open (a watch stream) stops too.
    ...(match.port === undefined ? [] : [`add rule inet vigil_lab input ip saddr ${peer} tcp sport ${match.port} drop`]),
  ];
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', '-f', '-'], { input: lines.join('\n') + '\n' });
}

/**
 * Packet loss on the machine's link: each packet it receives or sends on eth0 is dropped with
 * probability `percent` (nftables' random number, so no qdisc is needed: this kernel has no
 * sch_netem, and `tc netem` fails with "Specified qdisc kind is unknown"). Same table as cutOff.
 */
export async function loseRandom(host: string, percent: number): Promise<void> {
  if (!Number.isInteger(percent) || percent < 1 || percent > 100) throw new RangeError(`loseRandom: ${percent} is not a percentage from 1 to 100`);
  const lines = [
    'table inet vigil_lab {',
    '  chain input { type filter hook input priority 0; policy accept; }',
    '  chain output { type filter hook output priority 0; policy accept; }',
    '}',
    `add rule inet vigil_lab input iifname "eth0" numgen random mod 100 < ${percent} drop`,
    `add rule inet vigil_lab output oifname "eth0" numgen random mod 100 < ${percent} drop`,
  ];
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', '-f', '-'], { input: lines.join('\n') + '\n' });
}

export async function healAll(host: string): Promise<void> {
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', 'delete', 'table', 'inet', 'vigil_lab'], { allowFail: true });
}
