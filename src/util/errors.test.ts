import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { NetError, TlsError } from '../mtls/mtls.ts';
import { RuntimeApiError } from '../proxy/runtime.ts';
import { ERROR_CODES, EXIT_STATUS, VigilError, isCodedError, problem } from './errors.ts';
import { ExecError } from './exec.ts';

test('docs/errors.md lists exactly the registry: every code, each once, with its meaning, and nothing else', async () => {
  const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (.+) \|$/gm)].map((m) => ({ code: m[1]!, meaning: m[2]! }));
  const documented = rows.map((r) => r.code);
  assert.deepEqual(
    documented.filter((c, i) => documented.indexOf(c) !== i),
    [],
    'documented twice',
  );
  assert.deepEqual(
    documented.filter((c) => !Object.hasOwn(ERROR_CODES, c)),
    [],
    'documented but not in ERROR_CODES (src/util/errors.ts)',
  );
  assert.deepEqual(
    Object.keys(ERROR_CODES).filter((c) => !documented.includes(c)),
    [],
    'in ERROR_CODES but not documented',
  );
  for (const r of rows) assert.equal(r.meaning, ERROR_CODES[r.code as keyof typeof ERROR_CODES], `${r.code}: the doc's meaning differs from the registry's`);
});

test('the coded errors that are not VigilErrors carry a code of the registry', () => {
  const coded = [
    new ExecError(['/bin/false'], { code: 1, stdout: '', stderr: '' }, 'exited with 1'),
    new RuntimeApiError('no answer', true),
    new NetError('timeout', 'https://10.0.0.11:7710/v1/status', 'no answer'),
    new TlsError('https://10.0.0.11:7710/', 'CERT_HAS_EXPIRED', null),
  ];
  assert.deepEqual(
    coded.map((e) => (isCodedError(e) ? e.code : null)),
    ['EXEC', 'HAPROXY_RUNTIME', 'NET_TIMEOUT', 'NET_TLS'],
  );
  assert.equal(isCodedError(Object.assign(new Error('x'), { code: 'ENOENT' })), false, "a system error's code is not the registry's");
});

test('an error lists every problem with its place and fix', () => {
  const e = new VigilError('USAGE', [problem('a.yaml:3 x', 'is wrong', 'write y'), problem('b', 'also wrong', 'do z')]);
  assert.equal(e.message, 'a.yaml:3 x: is wrong\n  fix: write y\nb: also wrong\n  fix: do z');
  assert.equal(e.retryable, false);
});

test('docs/airgap.md lists every exit status of a refused bundle, each status used once', async () => {
  const doc = await readFile(new URL('../../docs/airgap.md', import.meta.url), 'utf8');
  const rows = Object.fromEntries([...doc.matchAll(/^\| .+ \| `([A-Z_]+)` \| (\d+) \|$/gm)].map((m) => [m[1]!, Number(m[2])]));
  assert.deepEqual(rows, EXIT_STATUS);
  const statuses = Object.values(EXIT_STATUS);
  assert.equal(new Set(statuses).size, statuses.length, 'two codes share an exit status');
  assert.ok(
    statuses.every((n) => n > 1 && n < 64),
    'statuses stay clear of 0, 1 (any coded error) and 70 (a bug)',
  );
});
