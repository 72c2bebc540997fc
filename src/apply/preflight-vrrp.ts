/**
 * Preflight for the floating entry address (`proxy.virtualAddress`): on each proxy machine the
 * interface keepalived is told to use (`proxy.vrrp.interface`) must exist and hold the machine's
 * own address, and the floating address must lie in that interface's subnet (clients on the
 * subnet ask for it by ARP, which only reaches that segment). keepalived's own config test does
 * not look at the machine's interfaces, so a wrong name would surface only as an address nobody
 * holds.
 */
import type { Cluster, Machine } from '../config/schema.ts';

export interface InterfaceAddress {
  iface: string;
  address: string;
  prefixLength: number;
}

/** `ip -4 -o addr show` lines: `2: ens18    inet 10.0.0.41/24 brd ... scope global ens18 ...`. */
export function parseIpAddr(text: string): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(line.trim());
    if (m) out.push({ iface: m[1]!, address: m[2]!, prefixLength: Number(m[3]) });
  }
  return out;
}

const toInt = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);

/** Whether `a` is in the subnet of `address/prefixLength`. */
export function sameSubnet(a: string, address: string, prefixLength: number): boolean {
  if (prefixLength === 0) return true;
  const mask = prefixLength >= 32 ? 0xffffffff : (0xffffffff << (32 - prefixLength)) >>> 0;
  return (toInt(a) & mask) >>> 0 === (toInt(address) & mask) >>> 0;
}

export interface VrrpFinding {
  severity: 'fail' | 'warn';
  what: string;
  why: string;
  fix: string;
}

/** What is wrong with a proxy machine's interfaces for keepalived; empty when nothing is. */
export function vrrpInterfaceFindings(cluster: Cluster, m: Machine, addrs: InterfaceAddress[]): VrrpFinding[] {
  const vip = cluster.proxy.virtualAddress;
  if (vip === undefined || !m.roles.includes('proxy')) return [];
  const iface = cluster.proxy.vrrp.interface;
  const own = addrs.find((a) => a.address === m.address);
  const on = addrs.filter((a) => a.iface === iface);
  if (!on.length)
    return [
      {
        severity: 'fail',
        what: `proxy.vrrp.interface is ${iface}, but ${m.name} has no interface of that name with an IPv4 address${own ? ` (its address ${m.address} is on ${own.iface})` : ''}`,
        why: 'keepalived could not hold the entry address there: no machine would serve it',
        fix: own
          ? `set proxy.vrrp.interface: ${own.iface} in the cluster file (the same name on every proxy machine)`
          : `set proxy.vrrp.interface to the interface of ${m.address}`,
      },
    ];
  const mine = on.find((a) => a.address === m.address);
  if (!mine)
    return [
      {
        severity: 'fail',
        what: `${iface} on ${m.name} does not hold the machine's address ${m.address}${own ? ` (it is on ${own.iface})` : ''}`,
        why: 'keepalived sends VRRP from that interface with the machine address as its source: the other proxy machines would not hear it',
        fix: own ? `set proxy.vrrp.interface: ${own.iface}` : `give ${iface} the address ${m.address}, or correct the machine's address`,
      },
    ];
  if (!sameSubnet(vip, mine.address, mine.prefixLength))
    return [
      {
        severity: 'warn',
        what: `proxy.virtualAddress ${vip} is outside ${m.name}'s subnet on ${iface} (${mine.address}/${mine.prefixLength})`,
        why: 'clients on that subnet find the holder of the address by ARP; outside it they need a route to it through a router that knows',
        fix: `choose a free address in ${mine.address}/${mine.prefixLength}, or route ${vip}/32 to the proxy machines`,
      },
    ];
  if (addrs.some((a) => a.address === vip))
    return [
      {
        severity: 'warn',
        what: `${m.name} holds ${vip} already`,
        why: 'keepalived (an earlier `vigil apply`) may hold it; anything else holding it would answer clients beside the proxy machine that should',
        fix: `if keepalived does not run on ${m.name} yet, remove it: \`ip addr del ${vip}/32 dev ${iface}\` on ${m.name}`,
      },
    ];
  return [];
}
