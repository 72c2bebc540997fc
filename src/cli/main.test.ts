import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

test('output piped into a reader that stops (`vigil lab status | head -1`) ends the command quietly, exit 0', async () => {
  // The CLI's own handler, then more output than a pipe holds, as a long status or render would print.
  const code = `const { main } = await import(${JSON.stringify(MAIN)}); await main(['node', 'vigil', '--version']); for (let i = 0; i < 20000; i++) process.stdout.write('x'.repeat(200) + '\\n');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.once('data', () => child.stdout.destroy()); // the reader goes away after its first line
  const status = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(status, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE|Unhandled/);
});
