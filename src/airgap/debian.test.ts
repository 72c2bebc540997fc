import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareVersions, installedStanzas, localIndex, parseControl, parseRelations, releaseSha256, resolveClosure } from './debian.ts';

const stanza = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
const index = (...s: Record<string, string>[]) => parseControl(s.map(stanza).join('\n\n'));
const pkg = (name: string, version: string, extra: Record<string, string> = {}) => ({
  Package: name,
  Version: version,
  Architecture: 'amd64',
  Filename: `pool/main/${name[0]}/${name}/${name}_${version.replace(':', '%3a')}_amd64.deb`,
  SHA256: 'a'.repeat(64),
  ...extra,
});

test('control files: stanzas, continuation lines, and the index written back', () => {
  const s = parseControl('Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\n\nPackage: b\nVersion: 2\n');
  assert.equal(s.length, 2);
  assert.equal(s[0]!.get('Description'), 'short\n long line\n .\n more');
  assert.equal(s[1]!.get('Version'), '2');
  const local = localIndex(index(pkg('haproxy', '2.6.12-1'), pkg('keepalived', '1:2.3.3-1')));
  assert.match(local, /^Filename: \.\/haproxy_2\.6\.12-1_amd64\.deb$/m);
  assert.match(local, /^Filename: \.\/keepalived_1%3a2\.3\.3-1_amd64\.deb$/m, 'the file name as the repository stored it');
  assert.equal(parseControl(local).length, 2);
  assert.throws(() => localIndex(index(pkg('x', '1', { Filename: '../../etc/passwd' }))), /names a file/);
});

test("Debian version order is dpkg's", () => {
  const less: [string, string][] = [
    ['1.0~rc1', '1.0'],
    ['1.0', '1.0-1'],
    ['1.0-1', '1.0-1+b1'],
    ['2.4-1', '2.30-1'],
    ['9', '1:0.1'],
    ['1.0~~', '1.0~'],
    ['1.0a', '1.0+'],
    ['3.0.11-1', '3.0.11-1+deb13u4'],
    ['1.2.3', '1.2.10'],
  ];
  for (const [a, b] of less) {
    assert.ok(compareVersions(a, b) < 0, `${a} < ${b}`);
    assert.ok(compareVersions(b, a) > 0, `${b} > ${a}`);
  }
  assert.equal(compareVersions('1:2.0-1', '1:2.0-1'), 0);
  assert.equal(compareVersions('1.0', '1.00'), 0);
});

test('relations: alternatives, versions, architecture qualifiers', () => {
  assert.deepEqual(parseRelations('libc6 (>= 2.34), python3:any, a | b (<< 2), c (> 1)'), [
    [{ name: 'libc6', op: '>=', version: '2.34' }],
    [{ name: 'python3' }],
    [{ name: 'a' }, { name: 'b', op: '<<', version: '2' }],
    [{ name: 'c', op: '>=', version: '1' }],
  ]);
});

test('the closure: dependencies beyond the base, alternatives, virtual packages, versions the base does not meet', () => {
  const idx = index(
    pkg('patroni', '4.0.4-1', { Depends: 'python3:any, python3-consul | python3-etcd | python3-kazoo, adduser' }),
    pkg('python3-etcd', '0.4.5-4', { Depends: 'python3-urllib3' }),
    pkg('python3-consul', '1.1.0-2'),
    pkg('python3-urllib3', '2.3.0-1'),
    pkg('python3', '3.13.5-1'),
    pkg('adduser', '3.152', { Architecture: 'all', 'Pre-Depends': 'passwd (>= 1:4.17)' }),
    pkg('passwd', '1:4.17.4-2'),
    pkg('passwd', '1:4.16.0-1'),
    pkg('haproxy', '3.0.11-1', { Depends: 'libc6 (>= 2.38), mail-transport-agent' }),
    pkg('exim4', '4.98-1', { Provides: 'mail-transport-agent' }),
    pkg('libc6', '2.41-12'),
    pkg('arm-only', '1', { Architecture: 'arm64' }),
    pkg('sysvinit', '3', { Priority: 'required' }),
  );
  const base = installedStanzas(
    [
      stanza({ Package: 'python3', Status: 'install ok installed', Version: '3.13.5-1' }),
      stanza({ Package: 'passwd', Status: 'install ok installed', Version: '1:4.13-1' }),
      stanza({ Package: 'libc6', Status: 'install ok installed', Version: '2.41-12' }),
      stanza({ Package: 'removed', Status: 'deinstall ok config-files', Version: '1' }),
    ].join('\n\n'),
  );
  // python3-etcd asked for: it meets patroni's alternative, so python3-consul is not taken.
  const c = resolveClosure(idx, ['patroni', 'python3-etcd', 'haproxy'], 'amd64', base);
  assert.deepEqual(c.missing, []);
  assert.deepEqual(
    c.packages.map((s) => `${s.get('Package')} ${s.get('Version')}`),
    ['adduser 3.152', 'exim4 4.98-1', 'haproxy 3.0.11-1', 'passwd 1:4.17.4-2', 'patroni 4.0.4-1', 'python3-etcd 0.4.5-4', 'python3-urllib3 2.3.0-1'],
    'passwd: the base has 1:4.13, adduser needs 1:4.17 or newer; python3 and libc6: the base has them',
  );
  // Alone, patroni takes the first alternative the index has.
  assert.ok(resolveClosure(idx, ['patroni'], 'amd64', base).packages.some((s) => s.get('Package') === 'python3-consul'));
  // Without a base, Priority: required stands for it (sysvinit is not fetched; libc6 is).
  const bare = resolveClosure(idx, ['haproxy', 'sysvinit'], 'amd64', null);
  assert.deepEqual(bare.packages.map((s) => s.get('Package')).sort(), ['exim4', 'haproxy', 'libc6']);
  // What nothing meets is named, with the package that needs it.
  const miss = resolveClosure(index(pkg('a', '1', { Depends: 'b (>= 2) | c' }), pkg('b', '1')), ['a', 'arm-only', 'nope'], 'amd64', []);
  assert.deepEqual(miss.missing, [
    { relation: 'arm-only', neededBy: '(wanted)' },
    { relation: 'nope', neededBy: '(wanted)' },
    { relation: 'b (>= 2) | c', neededBy: 'a' },
  ]);
});

test("an index's SHA-256 from a Release file", () => {
  const release = `Origin: Debian\nSuite: stable\nSHA256:\n ${'1'.repeat(64)}  1234 main/binary-amd64/Packages\n ${'2'.repeat(64)}   99 main/binary-amd64/Packages.gz\n`;
  assert.deepEqual(releaseSha256(release, 'main/binary-amd64/Packages.gz'), { sha256: '2'.repeat(64), size: 99 });
  assert.equal(releaseSha256(release, 'contrib/binary-amd64/Packages.gz'), undefined);
});
