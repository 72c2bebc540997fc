import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERROR_CODES, VigilError, problem } from './errors.ts';

test('every error code is documented in docs/errors.md', async () => {
  const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) assert.match(doc, new RegExp(`\\| \`${code}\` \\|`), code);
});

test('an error lists every problem with its place and fix', () => {
  const e = new VigilError('USAGE', [problem('a.yaml:3 x', 'is wrong', 'write y'), problem('b', 'also wrong', 'do z')]);
  assert.equal(e.message, 'a.yaml:3 x: is wrong\n  fix: write y\nb: also wrong\n  fix: do z');
  assert.equal(e.retryable, false);
});
