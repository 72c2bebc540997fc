/**
 * The floating entry address (`proxy.virtualAddress`): keepalived runs on every proxy machine
 * with a config that passes `keepalived --config-test` and is the one Vigil renders, the proxy
 * machines agree on the VRRP group (interface, router id, address, password, check), and exactly
 * one machine holds the address.
 */
import { withRole } from '../../config/schema.ts';
import { sharedSettings } from '../../facts/keepalived.ts';
import { PATHS } from '../../layout/paths.ts';
import { BINARIES, UNITS } from '../../layout/units.ts';
import type { Results } from '../results.ts';
import type { MachineFacts } from '../types.ts';
import { reachable, type EvalContext } from './context.ts';

const CHECK = 'entry-point';

export function checkEntryPoint(ctx: EvalContext, r: Results): void {
  const vip = ctx.cluster.proxy.virtualAddress;
  if (vip === undefined) return;
  const up = reachable(ctx);
  const proxies = withRole(ctx.cluster, 'proxy');
  const seen: { name: string; facts: NonNullable<MachineFacts['entryPoint']> }[] = [];
  for (const p of proxies) {
    const f = up.get(p.name)?.entryPoint;
    if (!f) continue;
    seen.push({ name: p.name, facts: f });
    r.ran(CHECK, p.name);
    if (f.unit.ok && f.unit.value !== 'active')
      r.fail(
        CHECK,
        p.name,
        `keepalived does not run on ${p.name} (${UNITS.keepalived} is ${f.unit.value})`,
        `${p.name} can neither hold the entry address ${vip} nor take it over when the machine holding it fails`,
        ctx.fixes.on(p.name, ['systemctl', 'start', UNITS.keepalived]) + ` (\`journalctl -u ${UNITS.keepalived} -n 50\` says why it stopped)`,
      );
    if (f.file.ok && f.file.value === null) {
      r.fail(
        CHECK,
        p.name,
        `${PATHS.keepalivedConfig} is missing on ${p.name}`,
        'keepalived cannot start there',
        ctx.fixes.reinstall(p.name, 'keepalived.conf'),
      );
      continue;
    }
    if (f.config.ok && !f.config.value.valid)
      r.fail(
        CHECK,
        p.name,
        `${PATHS.keepalivedConfig} on ${p.name} does not pass \`keepalived --config-test\`${f.config.value.output ? `:\n${f.config.value.output}` : ''}`,
        'keepalived refuses to start or reload with it: that machine drops out of the entry address group at its next restart',
        ctx.fixes.reinstall(p.name, 'keepalived.conf'),
      );
    else if (!f.config.ok)
      r.warn(
        CHECK,
        p.name,
        `keepalived.conf on ${p.name} cannot be checked: ${f.config.error}`,
        'a broken configuration stops keepalived at its next start or reload',
        ctx.fixes.on(p.name, [BINARIES.keepalived, '--config-test', '--use-file', PATHS.keepalivedConfig]),
      );
    if (f.file.ok && f.file.value && !f.file.value.asRendered)
      r.fail(
        CHECK,
        p.name,
        `${PATHS.keepalivedConfig} on ${p.name} is not the one \`vigil render\` gives it (edited by hand, or from another version of the cluster file)`,
        'the proxy machines may no longer agree on the VRRP group: two holders of the entry address, or none',
        ctx.fixes.reinstall(p.name, 'keepalived.conf'),
      );
    const peers = f.file.ok ? f.file.value?.summary.peers : undefined;
    const others = proxies.filter((o) => o.name !== p.name).map((o) => o.address);
    if (peers && (peers.length !== others.length || others.some((a) => !peers.includes(a))))
      r.fail(
        CHECK,
        p.name,
        `keepalived on ${p.name} sends VRRP to ${peers.join(', ') || 'no peer'}, not to the other proxy machines (${others.join(', ') || 'none'})`,
        'a proxy machine that does not hear the holder takes the address too: two holders',
        ctx.fixes.reinstall(p.name, 'keepalived.conf'),
      );
  }
  alike(ctx, r, seen);
  holders(ctx, r, vip, seen);
}

/** The VRRP group's settings must be the same on every proxy machine. */
function alike(ctx: EvalContext, r: Results, seen: { name: string; facts: NonNullable<MachineFacts['entryPoint']> }[]): void {
  const summaries = seen.flatMap((s) => (s.facts.file.ok && s.facts.file.value ? [{ name: s.name, summary: s.facts.file.value.summary }] : []));
  if (summaries.length < 2) return;
  const [first, ...rest] = summaries;
  const ref = sharedSettings(first!.summary);
  for (const s of rest) {
    const mine = sharedSettings(s.summary);
    const differing = Object.keys(ref).filter((k) => ref[k] !== mine[k]);
    const what = differing.map((k) => `${k} ${first!.name}: ${ref[k]}, ${s.name}: ${mine[k]}`);
    if (s.summary.authDigest !== first!.summary.authDigest) what.push(`auth_pass differs between ${first!.name} and ${s.name}`);
    if (what.length)
      r.fail(
        CHECK,
        null,
        `the proxy machines ${first!.name} and ${s.name} are not configured alike for the entry address: ${what.join('; ')}`,
        'VRRP peers that disagree ignore each other: each may hold the address (two holders), or one never takes it over',
        ctx.fixes.reinstall(`${first!.name} and ${s.name}`, 'keepalived.conf'),
      );
  }
}

/** Exactly one proxy machine holds the address. */
function holders(ctx: EvalContext, r: Results, vip: string, seen: { name: string; facts: NonNullable<MachineFacts['entryPoint']> }[]): void {
  r.ran(CHECK, null);
  const known = seen.filter((s) => s.facts.holds.ok);
  const holding = known.filter((s) => s.facts.holds.ok && s.facts.holds.value).map((s) => s.name);
  const proxies = withRole(ctx.cluster, 'proxy').map((p) => p.name);
  if (holding.length > 1)
    r.fail(
      CHECK,
      null,
      `the entry address ${vip} is held by ${holding.join(' and ')} at once`,
      'clients reach whichever machine answered their last ARP request: VRRP does not pass between the proxy machines (IP protocol 112 dropped by a firewall or the network, or a hypervisor or cloud that filters it; docs/failure-semantics.md)',
      `let IP protocol 112 (VRRP) pass between ${holding.join(', ')} (e.g. \`nft add rule inet filter input ip protocol vrrp accept\`), then ${ctx.fixes.on(holding[0]!, ['systemctl', 'restart', UNITS.keepalived])}`,
    );
  else if (holding.length === 0 && known.length === proxies.length)
    r.fail(
      CHECK,
      null,
      `no proxy machine holds the entry address ${vip}`,
      'clients and the application reach nothing through it',
      `see the other entry-point findings; keepalived releases the address where HAProxy does not answer on its stats port (${ctx.cluster.proxy.statsPort}): ${ctx.fixes.on(proxies[0]!, ['journalctl', '-u', UNITS.keepalived, '-n', '50'])}`,
    );
  else if (holding.length === 0)
    r.skip(CHECK, null, `no reachable proxy machine holds ${vip}; ${proxies.filter((p) => !known.some((k) => k.name === p)).join(', ')} could not be asked`);
}

/** Who holds the entry address, for a report's summary line: the names, or [] (undefined without a floating address). */
export function entryHolders(ctx: EvalContext): string[] | undefined {
  if (ctx.cluster.proxy.virtualAddress === undefined) return undefined;
  return [...reachable(ctx).values()].filter((m) => m.entryPoint?.holds.ok && m.entryPoint.holds.value).map((m) => m.name);
}
