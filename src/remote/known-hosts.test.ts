import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../util/exec.ts';
import { generateAdminKey } from './ssh-trust.ts';
import { addKnownHost, fingerprint, hostPattern, keyType, knownHostsLine, parseKnownHosts, pinnedKeys, type HostKey } from './known-hosts.ts';

const newKey = (): HostKey => {
  const [type, b64] = generateAdminKey().publicKey.split(' ');
  return { type: type!, blob: Buffer.from(b64!, 'base64') };
};

describe('known_hosts', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-known-hosts-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names hosts as OpenSSH does and fingerprints keys as ssh-keygen -lf', async () => {
    assert.equal(hostPattern('10.0.0.11', 22), '10.0.0.11');
    assert.equal(hostPattern('10.0.0.11', 2222), '[10.0.0.11]:2222');
    const key = newKey();
    assert.equal(keyType(key.blob), 'ssh-ed25519');
    const pub = join(dir, 'k.pub');
    await writeFile(pub, `${key.type} ${key.blob.toString('base64')} c\n`);
    assert.equal(fingerprint(key.blob), /(SHA256:\S+)/.exec((await run('ssh-keygen', ['-lf', pub])).stdout)![1]);
  });

  it('finds plain, listed, wildcard and hashed entries; negations and @revoked win', async () => {
    const [a, b, c, d] = [newKey(), newKey(), newKey(), newKey()];
    const file = join(dir, 'known_hosts');
    const text = [
      '# comment',
      knownHostsLine('10.0.0.11', 22, a),
      `10.0.0.99,[10.0.0.12]:2222 ${b.type} ${b.blob.toString('base64')}`,
      `10.0.1.*,!10.0.1.5 ${c.type} ${c.blob.toString('base64')}`,
      `@revoked * ${d.type} ${d.blob.toString('base64')}`,
      `10.0.0.13 ${d.type} ${d.blob.toString('base64')}`,
      'garbage line',
      `10.0.0.14 ssh-rsa ${a.blob.toString('base64')}`, // type outside does not match the blob: skipped
    ].join('\n');
    await writeFile(file, `${text}\n`);
    const entries = parseKnownHosts(text);
    assert.equal(entries.length, 5);
    const has = (addr: string, port: number, k: HostKey) => pinnedKeys(entries, addr, port).trusted.some((t) => t.blob.equals(k.blob));
    assert.ok(has('10.0.0.11', 22, a));
    assert.ok(!has('10.0.0.11', 2222, a), 'another port is another host');
    assert.ok(has('10.0.0.12', 2222, b));
    assert.ok(has('10.0.1.7', 22, c));
    assert.ok(!has('10.0.1.5', 22, c), 'negated');
    assert.ok(!has('10.0.0.13', 22, d), 'revoked');
    assert.equal(pinnedKeys(entries, '10.0.0.14', 22).trusted.length, 0);

    // What OpenSSH writes with HashKnownHosts yes (Debian's default) is read too.
    await writeFile(file, `${[text.split('\n')[1], text.split('\n')[2]].join('\n')}\n`);
    await run('ssh-keygen', ['-H', '-f', file]);
    const hashed = parseKnownHosts(await readFile(file, 'utf8'));
    assert.ok(hashed.some((e) => e.hosts.startsWith('|1|')));
    assert.ok(pinnedKeys(hashed, '10.0.0.11', 22).trusted.some((k) => k.blob.equals(a.blob)));
    assert.ok(pinnedKeys(hashed, '10.0.0.12', 2222).trusted.some((k) => k.blob.equals(b.blob)));
  });

  it('adds a pin once, keeping what the file held', async () => {
    const file = join(dir, 'add_known_hosts');
    const [a, b] = [newKey(), newKey()];
    await writeFile(file, '# kept\n10.9.9.9 ' + `${b.type} ${b.blob.toString('base64')}`); // no final newline
    assert.equal(await addKnownHost(file, '10.0.0.11', 2222, a, 'vigil:app1'), true);
    assert.equal(await addKnownHost(file, '10.0.0.11', 2222, a), false);
    const text = await readFile(file, 'utf8');
    assert.equal(text, `# kept\n10.9.9.9 ${b.type} ${b.blob.toString('base64')}\n[10.0.0.11]:2222 ${a.type} ${a.blob.toString('base64')} vigil:app1\n`);
    const found = (await run('ssh-keygen', ['-F', '[10.0.0.11]:2222', '-f', file])).stdout;
    assert.match(found, /ssh-ed25519/, 'OpenSSH finds the pin');
  });
});
