/** `vigil airgap ...` as an operator runs it: a child process, its output and its exit status. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
// The commands run in a scratch directory, where `tsx` would not resolve by name.
const TSX = import.meta.resolve('tsx');

function vigil(cwd: string, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const code = `const { main } = await import(${JSON.stringify(MAIN)}); process.exitCode = await main(['node', 'vigil', ...${JSON.stringify(args)}]);`;
  const child = spawn(process.execPath, ['--import', TSX, '--input-type=module', '-e', code], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

test('keys, bundle, verify and import from the command line; each refusal exits with its own status', async () => {
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-cli-'));
  await mkdir(join(d, 'fetched'));
  await writeFile(join(d, 'fetched', 'catalog.xml'), '<catalog/>');
  await writeFile(join(d, 'fetched', 'kb1.msu'), 'p'.repeat(10_000));

  const init = await vigil(d, 'airgap', 'keys', 'init', '--key', 'k.pem', '--trust', 'trust.json');
  assert.equal(init.status, 0, init.stderr);
  const pem = await readFile(join(d, 'k.pem'), 'utf8');
  assert.ok(!init.stdout.includes(pem.split('\n')[1]!), 'the private key is never printed');

  const bundle = await vigil(d, 'airgap', 'bundle', 'fetched', '--key', 'k.pem', '--out', 'b1', '--max-part-size', '4K');
  assert.equal(bundle.status, 0, bundle.stderr);
  assert.match(bundle.stdout, /sequence 1: 2 files in 3 part\(s\)/);
  assert.match(bundle.stderr, /^bundle: .*\(100%\)$/m, 'progress on stderr');

  const ok = await vigil(d, 'airgap', 'verify', 'b1', '--trust', 'trust.json');
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^verified: bundle [0-9a-f]{32} sequence 1, 2 files/);

  const same = await vigil(d, 'airgap', 'verify', 'b1', '--trust', 'trust.json', '--last-sequence', '1');
  assert.equal(same.status, 0);
  assert.match(same.stdout, /is the last imported: nothing to do/);

  const older = await vigil(d, 'airgap', 'verify', 'b1', '--trust', 'trust.json', '--last-sequence', '2');
  assert.equal(older.status, 26);
  assert.match(older.stderr, /^error \[AIRGAP_OLDER\]\nb1: has sequence 1, older than the last imported \(2\)/);

  const imported = await vigil(d, 'airgap', 'import', 'b1', '--trust', 'trust.json', '--target', 'patches');
  assert.equal(imported.status, 0, imported.stderr);
  assert.equal(await readFile(join(d, 'patches', 'catalog.xml'), 'utf8'), '<catalog/>');

  const again = await vigil(d, 'airgap', 'verify', 'b1', '--trust', 'trust.json', '--target', 'patches');
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /is the last imported: nothing to do/);

  const part = await readFile(join(d, 'b1', 'part-0002'));
  part[part.length - 1] = part[part.length - 1]! ^ 1;
  await writeFile(join(d, 'b1', 'part-0002'), part);
  const tampered = await vigil(d, 'airgap', 'verify', 'b1', '--trust', 'trust.json');
  assert.equal(tampered.status, 24);
  assert.match(tampered.stderr, /error \[AIRGAP_TAMPERED\]/);

  await rm(join(d, 'b1', 'manifest.sig'));
  const unsigned = await vigil(d, 'airgap', 'verify', 'b1', '--trust', 'trust.json');
  assert.equal(unsigned.status, 21);

  const badSize = await vigil(d, 'airgap', 'bundle', 'fetched', '--key', 'k.pem', '--out', 'b2', '--max-part-size', 'big');
  assert.equal(badSize.status, 1);
  assert.match(badSize.stderr, /--max-part-size: "big" is not a size\n {2}fix: give bytes or a number with K, M, G: 650M/);
});
