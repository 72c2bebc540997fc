import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { buildAssets, GENERATED } from './build.ts';

test('assets.generated.ts is the bundle of the current client/app.ts (else: npm run -s dashboard:build)', async () => {
  assert.equal(await readFile(GENERATED, 'utf8'), await buildAssets(), 'out of date: run `npm run -s dashboard:build` and commit the result');
});
