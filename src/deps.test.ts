/**
 * The declared dependency direction (eslint/deps.js): the lint rule that enforces it fails on a
 * forbidden import, the repository's lint runs it on src/, and the table itself has no cycle,
 * names every folder and keeps the lab, the reference application and test support out of
 * everything production imports.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { ALLOWED, PRODUCTION } from '../eslint/deps.js';
import vigil from '../eslint/folder-deps.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');
const table = ALLOWED as Record<string, string[]>;

/** Lints `code` as if it were the file `rel` with the folder rule alone (no type information needed). */
async function lintAs(rel: string, code: string): Promise<string[]> {
  const eslint = new ESLint({
    cwd: ROOT,
    overrideConfigFile: true,
    overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser }, plugins: { vigil }, rules: { 'vigil/folder-deps': 'error' } }],
  });
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, rel) });
  return result!.messages.map((m) => `${m.ruleId}: ${m.message}`);
}

test('the lint fails on an import against the direction: a daemon importing a generator, production importing the lab', async () => {
  const daemon = await lintAs('src/agent/planted.ts', "import { haproxyConfig } from '../render/haproxy.ts';\nexport const x = haproxyConfig;\n");
  assert.equal(daemon.length, 1, daemon.join('\n'));
  assert.match(daemon[0]!, /^vigil\/folder-deps: agent\/ must not import render\/haproxy\.ts/);
  const typeOnly = await lintAs('src/ops/planted.ts', "import type { LabState } from '../lab/state.ts';\nexport type X = LabState;\n");
  assert.match(typeOnly.join('\n'), /ops\/ must not import lab\/state\.ts/, 'a type-only import counts too');
  const dynamic = await lintAs('src/doctor/planted.ts', "export const m = () => import('../refapp/server.ts');\n");
  assert.match(dynamic.join('\n'), /doctor\/ must not import refapp\/server\.ts/, 'so does import()');
  const unknown = await lintAs('src/newfolder/planted.ts', "import { PATHS } from '../layout/paths.ts';\nexport const p = PATHS;\n");
  assert.match(unknown.join('\n'), /newfolder\/ is not in eslint\/deps\.js/);
});

test('the lint allows what the table allows: a lower layer, a named file, its own folder, and tests', async () => {
  assert.deepEqual(
    await lintAs('src/agent/planted.ts', "import { UNITS } from '../layout/units.ts';\nimport { x } from './daemon.ts';\nexport const y = [UNITS, x];\n"),
    [],
  );
  assert.deepEqual(await lintAs('src/observer/planted.ts', "import { x } from '../agent/client.ts';\nexport const y = x;\n"), []);
  assert.deepEqual(await lintAs('src/agent/planted.test.ts', "import { x } from '../testing/etcd.ts';\nexport const y = x;\n"), []);
});

test("the repository's lint runs the rule on every file of src/", async () => {
  const eslint = new ESLint({ cwd: ROOT });
  for (const file of ['src/agent/daemon.ts', 'src/observer/decide.ts', 'src/cli/main.ts']) {
    const config = (await eslint.calculateConfigForFile(join(ROOT, file))) as { rules: Record<string, unknown> };
    assert.deepEqual(config.rules['vigil/folder-deps'], [2], file);
  }
});

test('the table names every folder of src/, and only folders or files that exist', () => {
  const folders = readdirSync(SRC, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  assert.deepEqual(Object.keys(table).sort(), folders);
  for (const [from, to] of Object.entries(table))
    for (const entry of to) {
      assert.notEqual(entry, from, `${from} lists itself`);
      assert.ok(existsSync(join(SRC, entry)), `${from} allows ${entry}, which does not exist`);
    }
});

test('the folders form no cycle, and nothing production imports leads to the lab, the reference app or test support', () => {
  const folderOf = (entry: string) => entry.split('/')[0]!;
  // Depth-first search for a back edge; `path` is the chain that closes a cycle.
  const state = new Map<string, 'open' | 'done'>();
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    assert.notEqual(state.get(f), 'open', `cycle: ${[...path, f].join(' -> ')}`);
    state.set(f, 'open');
    for (const to of table[f] ?? []) visit(folderOf(to), [...path, f]);
    state.set(f, 'done');
  };
  for (const f of Object.keys(table)) visit(f, []);
  const reach = (f: string, seen = new Set<string>()): Set<string> => {
    for (const to of table[f] ?? []) if (!seen.has(folderOf(to))) reach(folderOf(to), seen.add(folderOf(to)));
    return seen;
  };
  for (const f of PRODUCTION) {
    const bad = [...reach(f)].filter((r) => !PRODUCTION.includes(r));
    assert.deepEqual(bad, [], `${f}/ reaches ${bad.join(', ')}`);
  }
});
