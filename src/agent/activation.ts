/**
 * The application's activation hook (cluster file `application.activation`,
 * docs/application-contract.md) in its three forms, each with a deadline. Every form carries the
 * same call, `{"active": true, "epoch": N, "validForMs": M}` or `{"active": false}`:
 *
 * - `url`: a POST of the call to a loopback endpoint; a 2xx answer is the confirmation.
 * - `command`: the program run with the call on its standard input (and in VIGIL_ACTIVE,
 *   VIGIL_EPOCH, VIGIL_VALID_FOR_MS); exit status 0 is the confirmation. Renewals at the same
 *   epoch are sent once half the validity given has passed, not every cycle (commandCall).
 * - `file`: the call written to the file (atomically, with a `seq` number); the application
 *   confirms a deactivation by writing `{"seq": K}` (K at least the call's) to `<file>.ack`.
 *   An activation is done once written: the file's `validUntilMs` (this machine's wall clock)
 *   stands for `validForMs`, since a file is read some time after it was written.
 *
 * Anything else within the deadline (another status, another exit status, no acknowledgement) is
 * a failure; for a deactivation the agent then stops every service (a fence).
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { run } from '../util/exec.ts';
import type { ActivationHook } from './agent.ts';

export type ActivationConfig = { timeoutMs: number } & ({ url: string } | { command: string[] } | { file: string });

/** The cluster file's `application.activation` (one form, checked by its schema) as an ActivationConfig. */
export function activationConfig(a: {
  url?: string | undefined;
  command?: string[] | undefined;
  file?: string | undefined;
  timeoutMs: number;
}): ActivationConfig {
  if (a.url !== undefined) return { url: a.url, timeoutMs: a.timeoutMs };
  if (a.command !== undefined) return { command: a.command, timeoutMs: a.timeoutMs };
  if (a.file !== undefined) return { file: a.file, timeoutMs: a.timeoutMs };
  throw new Error('application.activation needs one of url, command or file');
}

type Call = { active: true; epoch: number; validForMs: number } | { active: false };

/** The hook the config describes. `nowMs` (wall clock) and `pollMs` are for tests. */
export function activationHook(o: ActivationConfig, opts: { nowMs?: () => number; pollMs?: number } = {}): ActivationHook {
  const send = 'url' in o ? urlCall(o.url, o.timeoutMs) : 'command' in o ? commandCall(o.command, o.timeoutMs) : fileCall(o.file, o.timeoutMs, opts);
  return {
    activate: (epoch, validForMs) => send({ active: true, epoch, validForMs }),
    deactivate: () => send({ active: false }),
  };
}

/** What the hook is, for messages: `url http://…`, `command /usr/bin/x`, `file /run/x`. */
export function describeActivation(o: ActivationConfig): string {
  return 'url' in o ? `url ${o.url}` : 'command' in o ? `command ${o.command[0]}` : `file ${o.file}`;
}

function urlCall(url: string, timeoutMs: number): (c: Call) => Promise<void> {
  return async (c) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(c),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = (await res.text()).slice(0, 200);
    if (res.status < 200 || res.status > 299) throw new Error(`${url} answered ${res.status}: ${text}`);
  };
}

/**
 * A program costs a process each call, so an activation at the epoch it last confirmed is sent
 * again only once half the validity it gave has passed (the application then still holds at least
 * the other half); a deactivation, or a new epoch, is sent at once.
 */
function commandCall(argv: string[], timeoutMs: number): (c: Call) => Promise<void> {
  let last: { epoch: number; atMs: number; validForMs: number } | undefined;
  return async (c) => {
    if (c.active && last?.epoch === c.epoch && performance.now() - last.atMs < last.validForMs / 2) return;
    last = undefined;
    const sentAtMs = performance.now();
    const env = {
      ...process.env,
      VIGIL_ACTIVE: c.active ? '1' : '0',
      VIGIL_EPOCH: c.active ? String(c.epoch) : '',
      VIGIL_VALID_FOR_MS: c.active ? String(c.validForMs) : '',
    };
    const r = await run(argv[0]!, argv.slice(1), { timeoutMs, env, input: `${JSON.stringify(c)}\n`, allowFail: true });
    if (r.code !== 0) throw new Error(`${argv[0]} exited with ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).slice(0, 200)}`);
    if (c.active) last = { epoch: c.epoch, atMs: sentAtMs, validForMs: c.validForMs };
  };
}

function fileCall(file: string, timeoutMs: number, opts: { nowMs?: () => number; pollMs?: number }): (c: Call) => Promise<void> {
  const now = opts.nowMs ?? Date.now;
  const pollMs = opts.pollMs ?? 50;
  // Numbers only grow within an agent's run; a restarted agent starts above the wall clock's
  // milliseconds, so an acknowledgement left from its previous run never confirms a new call.
  let seq = now();
  return async (c) => {
    const mine = ++seq;
    const body = c.active ? { active: true, epoch: c.epoch, validUntilMs: now() + c.validForMs, seq: mine } : { active: false, seq: mine };
    const tmp = `${file}.tmp`;
    await writeFile(tmp, `${JSON.stringify(body)}\n`, { mode: 0o644 });
    await rename(tmp, file);
    if (c.active) return;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const acked = await readAck(`${file}.ack`);
      if (acked !== undefined && acked >= mine) return;
      if (performance.now() >= deadline) throw new Error(`${file}.ack did not acknowledge the deactivation (seq ${mine}) within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - performance.now()))));
    }
  };
}

/** The `seq` of `<file>.ack`, or undefined when it is missing or not such JSON. */
async function readAck(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const v = (JSON.parse(text) as { seq?: unknown }).seq;
    return typeof v === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}
