/**
 * The lab's machines as Linux namespaces: a network namespace per machine, joined by veth pairs
 * to one bridge that has an address on this host but no route beyond its subnet (IP forwarding
 * stays as it is: the machines have no default route), and each machine's root, an overlay of
 * its release's root filesystem, mounted on this host for systemd-nspawn to boot (boot.ts).
 */
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, waitFor } from '../util/exec.ts';
import { MAX_LATENCY_MS } from './chaos-plan.ts';
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
 * The machine cut off from the network altogether, as when its switch port or uplink fails while
 * it runs on: nothing in or out of eth0 (IP and ARP both, so it neither answers nor claims an
 * address on the link, its floating one included), its own loopback untouched. Every process
 * keeps running and believes what it last knew. healAll removes it.
 */
export async function isolate(host: string): Promise<void> {
  const lines = [
    'table inet vigil_lab {',
    '  chain input { type filter hook input priority 0; policy accept; }',
    '  chain output { type filter hook output priority 0; policy accept; }',
    '}',
    'add rule inet vigil_lab input iifname "eth0" drop',
    'add rule inet vigil_lab output oifname "eth0" drop',
    'table arp vigil_lab {',
    '  chain input { type filter hook input priority 0; policy drop; }',
    '  chain output { type filter hook output priority 0; policy drop; }',
    '}',
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

/** The program that holds queued packets (latency): it speaks nfnetlink_queue, see its header. */
const NFQ_DELAY = fileURLToPath(new URL('./nfq-delay.py', import.meta.url));
/** The iptables chain the latency fault adds in the machine's namespace (iptables-legacy: nftables here has no queue). */
const LATENCY_CHAIN = 'VIGIL_LAB_LATENCY';
export const latencyPidFile = (host: string): string => join(hostRoot(host), 'latency.pid');
export const latencyLogFile = (host: string): string => join(hostRoot(host), 'latency.log');

/**
 * Latency on the machine's link: every packet it sends or receives on eth0 is held `ms` before
 * it goes on, so a round trip to any other machine takes 2 × `ms` longer. This kernel has no
 * sch_netem (`tc netem` fails with "Specified qdisc kind is unknown"), and its nftables has no
 * `queue`; so iptables' NFQUEUE target (through iptables-legacy) hands the packets to
 * nfq-delay.py, run in the machine's network namespace, which gives each its verdict after the
 * delay. `--queue-bypass`: if that program is gone (the machine was killed), packets pass
 * undelayed rather than being dropped. `healAll` ends it. A second call replaces the first.
 */
export async function addLatency(host: string, ms: number): Promise<void> {
  if (!Number.isInteger(ms) || ms < 1 || ms > MAX_LATENCY_MS) throw new RangeError(`addLatency: ${ms} is not a delay from 1 to ${MAX_LATENCY_MS} ms`);
  await removeLatency(host);
  const log = await open(latencyLogFile(host), 'a');
  const child = spawn('ip', ['netns', 'exec', netnsName(host), 'python3', NFQ_DELAY, '0', String(ms)], {
    detached: true,
    stdio: ['ignore', 'pipe', log.fd],
  });
  await log.close();
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`nfq-delay.py on ${host} exited (${code}) before it was ready; see ${latencyLogFile(host)}`)));
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready\n')) resolve();
      });
    });
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  }
  child.removeAllListeners('exit');
  child.stdout!.destroy();
  child.unref();
  await writeFile(latencyPidFile(host), `${child.pid}\n`);
  const ipt = (...args: string[]) => inNetns(host, 'iptables-legacy', ['-w', ...args]);
  try {
    await ipt('-N', LATENCY_CHAIN);
    await ipt('-A', LATENCY_CHAIN, '-j', 'NFQUEUE', '--queue-num', '0', '--queue-bypass');
    await ipt('-I', 'INPUT', '-i', 'eth0', '-j', LATENCY_CHAIN);
    await ipt('-I', 'OUTPUT', '-o', 'eth0', '-j', LATENCY_CHAIN);
  } catch (err) {
    await removeLatency(host); // nothing half-done: no rule and no program left
    throw err;
  }
}

/**
 * Ends a latency fault: the rules go first, then the program lets go of the packets it holds
 * (SIGTERM: it accepts them all) and exits. Only its own pid is signalled, and only while that pid
 * is still nfq-delay.py in this machine's namespace. Returns the program's last words (how many
 * packets it delayed), or undefined when there was no fault.
 */
export async function removeLatency(host: string): Promise<string | undefined> {
  const ipt = (...args: string[]) => inNetns(host, 'iptables-legacy', ['-w', ...args]).catch(() => undefined);
  const chains = await run('ip', ['netns', 'exec', netnsName(host), 'iptables-legacy', '-w', '-S'], { allowFail: true });
  if (chains.code === 0 && chains.stdout.includes(`-N ${LATENCY_CHAIN}`)) {
    await ipt('-D', 'INPUT', '-i', 'eth0', '-j', LATENCY_CHAIN);
    await ipt('-D', 'OUTPUT', '-o', 'eth0', '-j', LATENCY_CHAIN);
    await ipt('-F', LATENCY_CHAIN);
    await ipt('-X', LATENCY_CHAIN);
  }
  const pid = Number((await readFile(latencyPidFile(host), 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const ours = async () => {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return cmdline.includes('nfq-delay.py') && (await netnsPids(host)).includes(pid);
  };
  if (await ours()) {
    process.kill(pid, 'SIGTERM');
    const gone = await waitFor('nfq-delay.py to let its packets go and exit', async () => ((await ours()) ? undefined : true), 10_000, 50).catch(() => false);
    if (!gone && (await ours())) process.kill(pid, 'SIGKILL');
  }
  await rm(latencyPidFile(host), { force: true });
  const words = (await readFile(latencyLogFile(host), 'utf8').catch(() => '')).trim().split('\n').pop();
  return words || undefined;
}

export async function healAll(host: string): Promise<void> {
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', 'delete', 'table', 'inet', 'vigil_lab'], { allowFail: true });
  await run('ip', ['netns', 'exec', netnsName(host), 'nft', 'delete', 'table', 'arp', 'vigil_lab'], { allowFail: true });
  await removeLatency(host);
}
