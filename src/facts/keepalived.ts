/**
 * What a proxy machine's keepalived.conf says about the floating entry address, reduced to what
 * must be alike on every proxy machine (and the peers, which must be the other proxies). The
 * VRRP password is reduced to a digest where the file is read, so no fact holds it.
 */
import { createHash } from 'node:crypto';

export interface KeepalivedSummary {
  interface: string | null;
  routerId: string | null;
  advertInt: string | null;
  authType: string | null;
  /** First 16 hex digits of the SHA-256 of auth_pass: equal on every proxy, or not. */
  authDigest: string | null;
  virtualAddresses: string[];
  unicastSrc: string | null;
  peers: string[];
  trackScripts: string[];
  /** Instances with `nopreempt`. */
  nopreempt: boolean;
}

/** The words of a line without its comment (keepalived's comments start with # or !). */
const words = (line: string): string[] =>
  line
    .replace(/[#!].*$/, '')
    .trim()
    .split(/\s+/)
    .filter(Boolean);

/** Reads the first vrrp_instance of a keepalived.conf (Vigil renders one). */
export function summarizeKeepalived(text: string): KeepalivedSummary {
  const out: KeepalivedSummary = {
    interface: null,
    routerId: null,
    advertInt: null,
    authType: null,
    authDigest: null,
    virtualAddresses: [],
    unicastSrc: null,
    peers: [],
    trackScripts: [],
    nopreempt: false,
  };
  const stack: string[] = [];
  let instances = 0;
  for (const line of text.split('\n')) {
    const w = words(line);
    if (!w.length) continue;
    if (w[0] === '}') {
      stack.pop();
      continue;
    }
    const opens = w[w.length - 1] === '{';
    const head = w[0]!;
    const where = stack.join('/');
    if (opens) {
      if (head === 'vrrp_instance') instances++;
      stack.push(head);
      continue;
    }
    if (instances !== 1 || !stack[0] || stack[0] !== 'vrrp_instance') continue;
    const value = w[1] ?? null;
    if (where === 'vrrp_instance') {
      if (head === 'interface') out.interface = value;
      else if (head === 'virtual_router_id') out.routerId = value;
      else if (head === 'advert_int') out.advertInt = value;
      else if (head === 'unicast_src_ip') out.unicastSrc = value;
      else if (head === 'nopreempt') out.nopreempt = true;
    } else if (where === 'vrrp_instance/authentication') {
      if (head === 'auth_type') out.authType = value;
      else if (head === 'auth_pass' && value !== null) out.authDigest = createHash('sha256').update(value).digest('hex').slice(0, 16);
    } else if (where === 'vrrp_instance/virtual_ipaddress') out.virtualAddresses.push(head);
    else if (where === 'vrrp_instance/unicast_peer') out.peers.push(head);
    else if (where === 'vrrp_instance/track_script') out.trackScripts.push(head);
  }
  return out;
}

/** The settings every proxy machine must share, by name, that may be shown: a VRRP group works only when these agree (and authDigest, which is never shown). */
export function sharedSettings(s: KeepalivedSummary): Record<string, string> {
  return {
    interface: s.interface ?? '(none)',
    virtual_router_id: s.routerId ?? '(none)',
    advert_int: s.advertInt ?? '(default)',
    auth_type: s.authType ?? '(none)',
    virtual_ipaddress: s.virtualAddresses.join(' ') || '(none)',
    track_script: s.trackScripts.join(' ') || '(none)',
    nopreempt: String(s.nopreempt),
  };
}
