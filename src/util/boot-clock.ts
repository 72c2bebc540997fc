import { readFileSync } from 'node:fs';
/**
 * The boot clock as the dead-man switch reads it (src/render/deadman.ts): `/proc/uptime`'s first
 * field in centiseconds. It is CLOCK_BOOTTIME, which goes on counting while the machine is
 * suspended (a monotonic clock does not), and sh can compare it with builtins alone.
 */
export function bootClockCs(procUptime: string): number {
  const m = /^(\d+)\.(\d{2})\s/.exec(procUptime);
  if (!m) throw new Error(`unexpected /proc/uptime: ${JSON.stringify(procUptime.slice(0, 40))}`);
  return Number(m[1]) * 100 + Number(m[2]);
}

/** The boot clock now, in milliseconds (10 ms steps), read from /proc/uptime. Same machine only. */
export function bootClockMs(): number {
  return bootClockCs(readFileSync('/proc/uptime', 'utf8')) * 10;
}
