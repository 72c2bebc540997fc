import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { comparePasswordFile } from '../facts/password-files.ts';
import { withPassword, type PasswordFile } from './passwords.ts';

const NEW = "n3w p@ss'w\\rd=:#!";

describe('withPassword', () => {
  it('replaces only the key line of a properties file, keeping comments and other keys', () => {
    const f: PasswordFile = { path: '/x/app.properties', format: 'properties', key: 'db.password' };
    const text = '# db\ndb.url=jdbc:postgresql://h:5000/sd\ndb.password=old\\\n  continued\nother=1\n';
    const r = withPassword(f, text, NEW);
    assert.equal(r.changed, true);
    const lines = r.text.split('\n');
    assert.deepEqual([lines[0], lines[1], lines[3]], ['# db', 'db.url=jdbc:postgresql://h:5000/sd', 'other=1']);
    assert.equal(comparePasswordFile(f, r.text, NEW).status, 'same');
    assert.equal(lines.length, 5, 'the continued line is replaced as a whole');
  });

  it('appends the key when the file lacks it, and changes nothing when it already holds the value', () => {
    const f: PasswordFile = { path: '/x/a.properties', format: 'properties', key: 'pw' };
    const r = withPassword(f, 'a=1', NEW);
    assert.equal(comparePasswordFile(f, r.text, NEW).status, 'same');
    assert.ok(r.text.startsWith('a=1\n'));
    assert.deepEqual(withPassword(f, r.text, NEW), { text: r.text, changed: false });
  });

  it('sets the last assignment of an env or shell file, keeping `export`', () => {
    const shell: PasswordFile = { path: '/x/db.sh', format: 'shell', key: 'DB_PASS' };
    const r = withPassword(shell, 'DB_PASS=first\n# x\nexport DB_PASS="second"\nX=1\n', NEW);
    assert.equal(r.text.split('\n')[0], 'DB_PASS=first');
    assert.ok(r.text.split('\n')[2]!.startsWith("export DB_PASS='"));
    assert.equal(comparePasswordFile(shell, r.text, NEW).status, 'same');
    const env: PasswordFile = { path: '/x/db.env', format: 'env', key: 'DB_PASS' };
    const e = withPassword(env, 'DB_PASS=old\n', 'plainvalue1');
    assert.equal(e.text, 'DB_PASS=plainvalue1\n');
  });

  it('refuses a password with a line break and a file it cannot parse, without quoting values', () => {
    const f: PasswordFile = { path: '/x/db.sh', format: 'shell', key: 'P' };
    assert.throws(() => withPassword(f, 'P=x\n', 'a\nb'), /line break/);
    const err = (() => {
      try {
        withPassword(f, "P='secretvalue\n", 'newsecret1');
      } catch (e) {
        return e as Error;
      }
    })();
    assert.match(err!.message, /\/x\/db\.sh:1/);
    assert.ok(!err!.message.includes('secretvalue') && !err!.message.includes('newsecret1'));
  });
});
