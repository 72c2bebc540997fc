import { test } from 'node:test';
import assert from 'node:assert/strict';
import { comparePasswordFile } from './password-files.ts';

const SECRET = `p@ss'w"rd $x\\y`;
const props = { path: '/etc/app/app.properties', format: 'properties' as const, key: 'spring.datasource.password' };

test('properties: same, differs, missing key, missing file, parse error with its line', () => {
  assert.equal(comparePasswordFile(props, `a=1\nspring.datasource.password=p@ss'w"rd $x\\\\y\n`, SECRET).status, 'same');
  const d = comparePasswordFile(props, 'spring.datasource.password=other\n', SECRET);
  assert.deepEqual(d, { path: props.path, key: props.key, status: 'differs', line: 1 });
  assert.equal(comparePasswordFile(props, 'a=1\n', SECRET).status, 'missing-key');
  assert.equal(comparePasswordFile(props, null, SECRET).status, 'missing-file');
  const bad = comparePasswordFile(props, 'a=1\na=2\n', SECRET);
  assert.equal(bad.status, 'unparseable');
  assert.match(bad.detail!, /:2 a: key already set on line 1/);
});

test('env and shell files: quotes and escapes as a shell reads them, the last assignment wins', () => {
  const env = { path: '/etc/app/db.env', format: 'env' as const, key: 'DB_PASSWORD' };
  const shell = { path: '/etc/app/db.sh', format: 'shell' as const, key: 'DB_PASSWORD' };
  assert.equal(comparePasswordFile(env, `DB_PASSWORD='p@ss'"'"'w"rd $x\\y'\n`, SECRET).status, 'same');
  assert.equal(comparePasswordFile(shell, `# db\nexport DB_PASSWORD="p@ss'w\\"rd \\$x\\\\y" # comment\n`, SECRET).status, 'same');
  assert.equal(comparePasswordFile(shell, 'DB_PASSWORD=old\nexport DB_PASSWORD=new\n', 'new').line, 2);
  assert.equal(comparePasswordFile(env, 'export DB_PASSWORD=x\n', 'x').status, 'missing-key'); // env files have no export
  assert.equal(comparePasswordFile(shell, 'DB_PASSWORD="open\n', 'x').status, 'unparseable');
});

test('no result ever holds the value, found or expected', () => {
  for (const content of [`spring.datasource.password=${SECRET}x`, `spring.datasource.password=${SECRET}`, 'spring.datasource.password=\\uZZZZ']) {
    const r = JSON.stringify(comparePasswordFile(props, content, SECRET));
    assert.ok(!r.includes('p@ss') && !r.includes('ZZZZ'), r);
  }
});
