/** Helpers for tests only. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import type { ExecOptions, ExecResult, RemoteShell } from '../remote/types.ts';
import { VigilError } from '../util/errors.ts';

/** The VigilError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function rejectionOf(p: Promise<unknown>): Promise<VigilError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VigilError, `expected a VigilError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a VigilError');
}

/**
 * This machine as a RemoteShell, for unit tests of code that runs commands on a machine: the real
 * programs (openssl, psql, sha256sum, ...) on files and servers the test made. Not for lab tests,
 * which use the lab's own shells.
 */
export class LocalShell implements RemoteShell {
  constructor(readonly machine = 'local') {}
  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return new Promise((resolve) => {
      const child = execFile(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
      child.stdin?.on('error', () => {}); // a program that exits without reading its input
      child.stdin?.end(opts.input ?? '');
    });
  }
  readFile = (path: string): Promise<Buffer | null> => readFile(path).catch(() => null);
  writeFile = async (path: string, content: string | Buffer, opts: { mode?: number } = {}): Promise<void> =>
    writeFile(path, content, { mode: opts.mode ?? 0o644 });
  close = async (): Promise<void> => {};
}
