import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoginLimiter, Sessions, sessionCookie, tokenOf } from './auth.ts';
import { hashPassword, verifyPassword } from './users.ts';
import { SCRYPT_HASH_RE } from '../config/schema.ts';

test('scrypt: a hash in the secrets-file format verifies its password and no other; a malformed or absurd one verifies nothing', async () => {
  const h = await hashPassword('correct horse');
  assert.match(h, SCRYPT_HASH_RE);
  assert.ok(!h.includes('correct horse'));
  assert.equal(await verifyPassword(h, 'correct horse'), true);
  assert.equal(await verifyPassword(h, 'correct hors'), false);
  assert.notEqual(await hashPassword('correct horse'), h, 'a fresh salt each time');
  assert.equal(await verifyPassword('plain', 'plain'), false);
  assert.equal(await verifyPassword(h.replace(/^scrypt\$\d+/, 'scrypt$1073741824'), 'correct horse'), false, 'a cost of 2^30 is refused, not computed');
});

test('sessions end after their idle time; each use extends it; a logout ends one', () => {
  let now = 0;
  const s = new Sessions(() => now, 1000);
  const t = s.create('ann', 'viewer');
  now = 900;
  assert.equal(s.get(t)?.user, 'ann');
  now = 1800;
  assert.equal(s.get(t)?.role, 'viewer', 'the use at 900 extended it');
  now = 2900;
  assert.equal(s.get(t), undefined);
  const u = s.create('bob', 'admin');
  s.end(u);
  assert.equal(s.get(u), undefined);
  assert.equal(s.get('guessed'), undefined);
});

test('the session cookie: __Host- prefix, HttpOnly, Secure, SameSite=Strict, Path=/; read back from a Cookie header', () => {
  assert.equal(sessionCookie('abc'), '__Host-vigil-session=abc; Path=/; HttpOnly; Secure; SameSite=Strict');
  assert.equal(tokenOf('a=1; __Host-vigil-session=abc; b=2'), 'abc');
  assert.equal(tokenOf('vigil-session=abc'), undefined);
  assert.equal(tokenOf(undefined), undefined);
});

test('the login limit: after N failures a client waits until the oldest leaves the window; others are not held up until the overall limit', () => {
  let now = 0;
  const l = new LoginLimiter({ perClient: 3, overall: 5, windowMs: 60_000 }, () => now);
  for (let i = 0; i < 3; i++) {
    assert.equal(l.retryAfterMs('1.1.1.1'), 0);
    l.failed('1.1.1.1');
    now += 1000;
  }
  assert.equal(l.retryAfterMs('1.1.1.1'), 57_000);
  assert.equal(l.retryAfterMs('2.2.2.2'), 0);
  l.failed('2.2.2.2');
  l.failed('3.3.3.3');
  assert.ok(l.retryAfterMs('4.4.4.4') > 0, 'five failures overall hold everyone');
  now = 61_000;
  assert.equal(l.retryAfterMs('1.1.1.1'), 0);
});
