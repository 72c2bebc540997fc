/**
 * Running external programs: always with an argument vector (never a shell string), a deadline,
 * and the program's stderr in the error. Secrets go through stdin or files, never arguments.
 */
import { spawn } from 'node:child_process';
import type { CodedError } from './errors.ts';

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Do not throw on a non-zero exit; the caller looks at `code`. */
  allowFail?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class ExecError extends Error implements CodedError {
  readonly code = 'EXEC' as const;

  constructor(
    readonly argv: string[],
    readonly result: RunResult,
    reason: string,
  ) {
    super(`${argv.join(' ')}: ${reason}${result.stderr.trim() ? `\n${result.stderr.trim()}` : ''}`);
    this.name = 'ExecError';
  }
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new ExecError([cmd, ...args], { code: -1, stdout, stderr }, err.message));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? (signal ? 128 : -1), stdout, stderr };
      if (timedOut) reject(new ExecError([cmd, ...args], result, `timed out after ${timeoutMs} ms`));
      else if (result.code !== 0 && !opts.allowFail) reject(new ExecError([cmd, ...args], result, `exited with ${result.code}`));
      else resolve(result);
    });
    child.stdin.on('error', () => {}); // a program that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 250): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}
