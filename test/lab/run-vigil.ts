/** Runs the `vigil` command of this checkout as a user would, for lab tests: exit status and all output. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const VIGIL = fileURLToPath(new URL('../../bin/vigil.js', import.meta.url));

/**
 * A command that has not exited after `timeoutMs` (default 5 min: a whole apply takes well under
 * one) is killed and reported with code 124 and a line saying so, so a command that hangs fails
 * its test instead of holding up the suite.
 */
export function vigil(args: string[], opts: { stdout?: boolean; timeoutMs?: number } = {}): Promise<{ code: number; out: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VIGIL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    let hung = false;
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      stdout += d.toString();
      if (opts.stdout) process.stdout.write(d.toString().replace(/^/gm, '# '));
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (hung) out += `\n[test] vigil ${args.join(' ')} had not exited after ${timeoutMs} ms: killed\n`;
      resolve({ code: hung ? 124 : (code ?? 1), out, stdout });
    });
  });
}
