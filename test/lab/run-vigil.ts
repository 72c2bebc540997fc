/** Runs the `vigil` command of this checkout as a user would, for lab tests: exit status and all output. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const VIGIL = fileURLToPath(new URL('../../bin/vigil.js', import.meta.url));

export function vigil(args: string[], opts: { stdout?: boolean } = {}): Promise<{ code: number; out: string; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VIGIL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      stdout += d.toString();
      if (opts.stdout) process.stdout.write(d.toString().replace(/^/gm, '# '));
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, out, stdout }));
  });
}
