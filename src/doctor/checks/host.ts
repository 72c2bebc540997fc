/**
 * Each machine as a host: owners and modes of Vigil's directories and files (the seed's "/opt/HA
 * has incorrect ownership"), clocks in step with the other machines, free disk space.
 */
import { PATHS } from '../../layout/paths.ts';
import { pathRules } from '../expect.ts';
import type { Results } from '../results.ts';
import { THRESHOLDS } from '../thresholds.ts';
import { fmtBytes, machineNamed, octal, reachable, type EvalContext } from './context.ts';

export function checkOwnership(ctx: EvalContext, r: Results): void {
  for (const f of reachable(ctx).values()) {
    if (!f.paths) continue;
    if (!f.paths.ok) {
      r.warn(
        'ownership',
        f.name,
        `owners and modes on ${f.name} cannot be checked: ${f.paths.error}`,
        'a directory its service cannot write stops that service at its next start',
        ctx.fixes.on(f.name, ['stat', '/etc/vigil']),
      );
      continue;
    }
    r.ran('ownership', f.name);
    const stats = new Map(f.paths.value.map((s) => [s.path, s]));
    const missing: string[] = [];
    for (const rule of pathRules(ctx.cluster, machineNamed(ctx, f.name)!, ctx.rendered.get(f.name) ?? [])) {
      const st = stats.get(rule.path);
      if (!st) {
        if (rule.required) missing.push(rule.path);
        continue;
      }
      if (st.type !== rule.type) {
        r.fail('ownership', f.name, `${rule.path} on ${f.name} is not a ${rule.type}`, rule.why, ctx.fixes.reinstall(f.name, rule.path));
        continue;
      }
      if (st.user !== rule.user || st.group !== rule.group) {
        r.fail(
          'ownership',
          f.name,
          `${rule.path} on ${f.name} is owned by ${st.user}:${st.group}; it must be ${rule.user}:${rule.group}`,
          rule.why,
          ctx.fixes.on(f.name, ['chown', ...(rule.recursive ? ['-R'] : []), `${rule.user}:${rule.group}`, rule.path]),
        );
      }
      const extra = st.mode & rule.forbid;
      if (extra) {
        const who = [extra & 0o070 ? 'its group' : '', extra & 0o007 ? 'others' : ''].filter(Boolean).join(' and ');
        r.fail(
          'ownership',
          f.name,
          `${rule.path} on ${f.name} has mode ${octal(st.mode)}: ${who} may ${extra & 0o022 ? 'write' : 'read'} it`,
          rule.why,
          ctx.fixes.on(f.name, ['chmod', octal(st.mode & ~rule.forbid), rule.path]),
        );
      }
    }
    // One finding for all of them: a machine missing files usually misses many for one reason.
    if (missing.length) {
      r.fail(
        'ownership',
        f.name,
        `${missing.length === 1 ? `${missing[0]} is` : `${missing.length} of Vigil's files and directories are`} missing on ${f.name}${missing.length > 1 ? `: ${missing.join(', ')}` : ''}`,
        'the components that read them do not start, or run with what they had in memory until their next restart',
        ctx.fixes.reinstall(f.name, missing.length === 1 ? missing[0]! : 'its files'),
      );
    }
  }
}

const CLOCK_WHY =
  "certificates are checked against each machine's clock, file sync compares confirmation times across machines, and events and logs from machines whose clocks disagree cannot be put in order";

/**
 * Each machine's clock against the others: offsets are measured from this shell, and compared
 * with their median, so a wrong clock here does not make every machine look wrong.
 */
export function checkClock(ctx: EvalContext, r: Results): void {
  const measured = [...reachable(ctx).values()].flatMap((f) => (f.clock?.ok ? [{ name: f.name, ...f.clock.value }] : []));
  for (const f of reachable(ctx).values()) {
    if (f.clock && !f.clock.ok) r.warn('clock', f.name, `the clock of ${f.name} cannot be read: ${f.clock.error}`, CLOCK_WHY, ctx.fixes.on(f.name, ['date']));
    const ntp = f.systemd?.ntpSynchronized;
    if (ntp?.ok && !ntp.value) {
      r.warn(
        'clock',
        f.name,
        `the clock of ${f.name} is not synchronised by NTP`,
        `it drifts away from the others; ${CLOCK_WHY}`,
        ctx.fixes.on(f.name, ['timedatectl', 'set-ntp', 'true']),
      );
    }
  }
  if (measured.length === 0) return;
  const offsets = measured.map((c) => c.offsetMs).sort((a, b) => a - b);
  const median = offsets[Math.floor(offsets.length / 2)]!;
  for (const c of measured) {
    r.ran('clock', c.name);
    const skew = c.offsetMs - median;
    const beyond = Math.abs(skew) - c.uncertaintyMs;
    if (beyond <= THRESHOLDS.clockWarnMs) continue;
    const what = `the clock of ${c.name} is ${(Math.abs(skew) / 1000).toFixed(2)} s ${skew > 0 ? 'ahead of' : 'behind'} the other machines (±${Math.round(c.uncertaintyMs)} ms)`;
    const fix = ctx.fixes.syncClock(c.name);
    if (beyond > THRESHOLDS.clockFailMs) r.fail('clock', c.name, what, CLOCK_WHY, fix);
    else r.warn('clock', c.name, what, CLOCK_WHY, fix);
  }
  if (Math.abs(median) > THRESHOLDS.clockFailMs) {
    r.warn(
      'clock',
      null,
      `this shell's clock is ${(Math.abs(median) / 1000).toFixed(1)} s ${median > 0 ? 'behind' : 'ahead of'} the cluster's`,
      'doctor judges certificate expiry by it, and the admin certificate may look invalid to the machines',
      'timedatectl set-ntp true (on this machine)',
    );
  }
}

/** What stops when the filesystem holding `path` is full. */
function diskWhy(ctx: EvalContext, path: string): string {
  if (path === PATHS.pgData) return 'when it is full PostgreSQL stops and writes fail (a primary also keeps WAL for a replica that falls behind)';
  if (path === PATHS.etcdData) return 'when it is full etcd refuses every write, so no leader can renew its lease';
  if (ctx.cluster.application.syncDirs.includes(path))
    return 'when it is full the application cannot store attachments there, and file sync cannot deliver them to this machine';
  return 'when it is full the components writing under it (state, logs, runtime files) fail';
}

export function checkDisk(ctx: EvalContext, r: Results): void {
  for (const f of reachable(ctx).values()) {
    if (!f.disk) continue;
    if (!f.disk.ok) {
      r.warn(
        'disk',
        f.name,
        `free space on ${f.name} cannot be checked: ${f.disk.error}`,
        'a full disk stops PostgreSQL and etcd',
        ctx.fixes.on(f.name, ['df', '-h', '/var/lib/vigil']),
      );
      continue;
    }
    r.ran('disk', f.name);
    const seen = new Set<string>();
    for (const d of f.disk.value) {
      if (seen.has(d.mount)) continue;
      seen.add(d.mount);
      const pct = d.totalBytes > 0 ? (100 * d.freeBytes) / d.totalBytes : 100;
      const failing = pct < THRESHOLDS.diskFailFreePercent || d.freeBytes < THRESHOLDS.diskFailFreeBytes;
      const low = pct < THRESHOLDS.diskWarnFreePercent || d.freeBytes < THRESHOLDS.diskWarnFreeBytes;
      if (!failing && !low) continue;
      const what = `only ${fmtBytes(d.freeBytes)} (${pct.toFixed(1)} %) free on ${d.mount} of ${f.name}, which holds ${d.path}`;
      const why = diskWhy(ctx, d.path);
      const fix = `find what fills it: ${ctx.fixes.on(f.name, ['du', '-xh', '--max-depth=2', d.mount])}, and remove or move it, or give the filesystem more space`;
      if (failing) r.fail('disk', f.name, what, why, fix);
      else r.warn('disk', f.name, what, why, fix);
    }
  }
}
