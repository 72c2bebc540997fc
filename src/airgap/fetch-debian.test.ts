/** A Debian package set fetched from a repository on 127.0.0.1 (never any other address); InRelease signed with a key made here by gpg. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { run } from '../util/exec.ts';
import { VigilError } from '../util/errors.ts';
import { parseControl, REPO_FILE, type RepoInfo } from './debian.ts';
import { fetchSources, parseSources } from './fetch.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** A repository: path -> bytes, served on 127.0.0.1. */
async function serve(files: Map<string, Buffer>): Promise<{ base: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? '/');
    requests.push(path);
    const body = files.get(path);
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}/`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const debs = {
  'haproxy_3.0.11-1_amd64.deb': Buffer.from('haproxy bytes'),
  'libc6_2.41-12_amd64.deb': Buffer.from('libc6 bytes'),
  'keepalived_1%3a2.3.3-1_amd64.deb': Buffer.from('keepalived bytes'),
  'unrelated_1_amd64.deb': Buffer.from('not asked for'),
};

function packagesIndex(dir: string, bytes: Record<string, Buffer> = debs): string {
  const deps: Record<string, string> = { haproxy: 'libc6 (>= 2.38)', keepalived: 'libc6' };
  return Object.entries(bytes)
    .map(([file, b]) => {
      const [name, version] = file.split('_');
      return [
        `Package: ${name}`,
        `Version: ${version!.replace('%3a', ':')}`,
        'Architecture: amd64',
        ...(deps[name!] ? [`Depends: ${deps[name!]}`] : []),
        `Filename: ${dir}${file}`,
        `Size: ${b.length}`,
        `SHA256: ${sha(b)}`,
        `Description: ${name}`,
      ].join('\n');
    })
    .join('\n\n');
}

async function sourcesFile(line: string): Promise<{ dir: string; sources: string; out: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-debset-'));
  await writeFile(join(dir, 'sources.txt'), `${line}\n`);
  return { dir, sources: join(dir, 'sources.txt'), out: join(dir, 'out') };
}

test('deb lines: fields checked, each wrong one named with its fix', () => {
  const ok = parseSources('deb http://127.0.0.1:1/debian suite=trixie release=debian/13 packages=@vigil,socat base=st keyring=k.gpg\n', '/s/sources.txt');
  assert.equal(ok.length, 1);
  assert.deepEqual(ok[0]!.deb, {
    release: 'debian/13',
    arch: 'amd64',
    suite: 'trixie',
    component: 'main',
    packages: ['@vigil', 'socat'],
    base: '/s/st',
    keyring: '/s/k.gpg',
  });
  assert.equal(ok[0]!.path, 'debian-13');
  const err = (() => {
    try {
      parseSources('deb ftp://x/ release=13 packages=Bad_Name color=red path=../x\n', 'sources.txt');
    } catch (e) {
      return e as VigilError;
    }
    throw new Error('accepted');
  })();
  assert.equal(err.code, 'AIRGAP_SOURCES');
  const where = err.problems.map((p) => p.where);
  assert.deepEqual(where, ['sources.txt:1 url', 'sources.txt:1 color', 'sources.txt:1 release', 'sources.txt:1 packages', 'sources.txt:1 path']);
  assert.throws(() => parseSources('deb http://x/ release=debian/13\n', 's'), /packages[\s\S]*is missing/);
});

test('a flat repository: the closure fetched and checked against the index, a local index written; a tampered .deb is refused', async () => {
  const files = new Map<string, Buffer>(Object.entries(debs).map(([f, b]) => [`/repo/${f}`, b]));
  files.set('/repo/Packages.gz', gzipSync(packagesIndex('./')));
  const repo = await serve(files);
  try {
    const base = 'Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n';
    const s = await sourcesFile(`deb ${repo.base}repo/ release=debian/13 packages=@lab base=status`);
    await writeFile(join(s.dir, 'status'), base);
    const lines: string[] = [];
    const got = await fetchSources({
      sourcesPath: s.sources,
      out: s.out,
      progress: (l) => lines.push(l),
      packageGroups: { '@lab': (r) => (r === 'debian/13' ? ['haproxy', 'keepalived'] : undefined) },
    });
    assert.deepEqual(got.map((f) => `${f.outcome} ${f.path} ${f.verified}`).sort(), [
      'downloaded debian-13/haproxy_3.0.11-1_amd64.deb true',
      'downloaded debian-13/keepalived_1%3a2.3.3-1_amd64.deb true',
      'downloaded debian-13/libc6_2.41-12_amd64.deb true',
      'written debian-13/Packages false',
      `written debian-13/${REPO_FILE} false`,
    ]);
    assert.ok(lines.some((l) => /index NOT verified: the repository has no InRelease/.test(l)));
    assert.ok(
      lines.some((l) => /3 packages \(.*\) for 2 asked, beyond the base in/.test(l)),
      lines.join('\n'),
    );
    assert.ok(repo.requests.includes('/repo/keepalived_1%3a2.3.3-1_amd64.deb'), 'the file name as stored, % quoted in the URL');
    const dir = join(s.out, 'debian-13');
    const index = parseControl(await readFile(join(dir, 'Packages'), 'utf8'));
    assert.deepEqual(index.map((x) => x.get('Filename')).sort(), [
      './haproxy_3.0.11-1_amd64.deb',
      './keepalived_1%3a2.3.3-1_amd64.deb',
      './libc6_2.41-12_amd64.deb',
    ]);
    const info = JSON.parse(await readFile(join(dir, REPO_FILE), 'utf8')) as RepoInfo;
    assert.deepEqual([info.release, info.index, info.count, info.packages], ['debian/13', 'none', 3, ['haproxy', 'keepalived']]);

    // A second run finds every file present; a .deb altered on the server is refused and not kept.
    const again = await fetchSources({ sourcesPath: s.sources, out: s.out, packageGroups: { '@lab': () => ['haproxy', 'keepalived'] } });
    assert.ok(again.filter((f) => f.path.endsWith('.deb')).every((f) => f.outcome === 'present'));
    files.set('/repo/haproxy_3.0.11-1_amd64.deb', Buffer.from('haproxy bytes, altered'));
    const t = await sourcesFile(`deb ${repo.base}repo/ release=debian/13 packages=haproxy`);
    await assert.rejects(fetchSources({ sourcesPath: t.sources, out: t.out }), (e: VigilError) => {
      assert.equal(e.code, 'AIRGAP_FETCH');
      assert.match(e.message, /SHA-256 of the download is [0-9a-f]{64}, not the published/);
      return true;
    });
    assert.deepEqual(
      (await readdir(join(t.out, 'debian-13'))).filter((f) => f.startsWith('haproxy')),
      [],
      'nothing kept of the altered file',
    );
    // A dependency the index cannot meet is named with the package that needs it.
    const u = await sourcesFile(`deb ${repo.base}repo/ release=debian/13 packages=haproxy,nope base=status`);
    await writeFile(join(u.dir, 'status'), 'Package: dpkg\nStatus: install ok installed\nVersion: 1\n');
    files.set('/repo/Packages.gz', gzipSync(packagesIndex('./', { 'haproxy_3.0.11-1_amd64.deb': debs['haproxy_3.0.11-1_amd64.deb'] })));
    await assert.rejects(fetchSources({ sourcesPath: u.sources, out: u.out }), (e: VigilError) => {
      assert.match(e.message, /has no package nope for amd64/);
      assert.match(e.message, /has nothing for libc6 \(>= 2\.38\), which haproxy depends on/);
      return true;
    });
  } finally {
    await repo.close();
  }
});

test('a signed repository: InRelease checked with gpgv against the keyring, the index against InRelease; a wrong key or index is refused', async (t) => {
  if ((await run('sh', ['-c', 'command -v gpg && command -v gpgv'], { allowFail: true })).code !== 0) return t.skip('gpg or gpgv is not installed');
  const home = await mkdtemp(join(tmpdir(), 'vigil-gpg-'));
  const gpg = (args: string[], input?: string) =>
    run('gpg', ['--homedir', home, '--batch', '--quiet', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { input });
  await gpg(['--quick-gen-key', 'Repo <repo@example.invalid>', 'ed25519', 'sign', 'never']);
  await gpg(['--export', '--output', join(home, 'repo.gpg')]);
  const other = await mkdtemp(join(tmpdir(), 'vigil-gpg-'));
  await run('gpg', [
    '--homedir',
    other,
    '--batch',
    '--quiet',
    '--pinentry-mode',
    'loopback',
    '--passphrase',
    '',
    '--quick-gen-key',
    'Other <o@example.invalid>',
    'ed25519',
    'sign',
    'never',
  ]);
  await run('gpg', ['--homedir', other, '--batch', '--export', '--output', join(other, 'other.gpg')]);

  const gz = gzipSync(packagesIndex('pool/main/'));
  const files = new Map<string, Buffer>(Object.entries(debs).map(([f, b]) => [`/debian/pool/main/${f}`, b]));
  files.set('/debian/dists/trixie/main/binary-amd64/Packages.gz', gz);
  const release = (sum: string) => `Origin: Test\nSuite: trixie\nSHA256:\n ${sum} ${gz.length} main/binary-amd64/Packages.gz\n`;
  const sign = async (text: string) => Buffer.from((await gpg(['--clearsign', '--output', '-'], text)).stdout);
  files.set('/debian/dists/trixie/InRelease', await sign(release(sha(gz))));
  const repo = await serve(files);
  try {
    const line = (keyring: string) => `deb ${repo.base}debian suite=trixie release=debian/13 packages=haproxy keyring=${keyring}`;
    const s = await sourcesFile(line(join(home, 'repo.gpg')));
    const lines: string[] = [];
    const got = await fetchSources({ sourcesPath: s.sources, out: s.out, progress: (l) => lines.push(l) });
    assert.equal(got.filter((f) => f.path.endsWith('.deb')).length, 2, 'haproxy and libc6 (no base: nothing is assumed installed)');
    assert.ok(
      lines.some((l) => /index verified: InRelease signed \(checked with .*repo\.gpg\)/.test(l)),
      lines.join('\n'),
    );
    assert.equal((JSON.parse(await readFile(join(s.out, 'debian-13', REPO_FILE), 'utf8')) as RepoInfo).index, 'signed');

    const wrongKey = await sourcesFile(line(join(other, 'other.gpg')));
    await assert.rejects(fetchSources({ sourcesPath: wrongKey.sources, out: wrongKey.out }), /InRelease's signature does not verify with/);
    await assert.rejects(readdir(join(wrongKey.out, 'debian-13')), 'nothing fetched');

    files.set('/debian/dists/trixie/InRelease', await sign(release('0'.repeat(64))));
    const badIndex = await sourcesFile(line(join(home, 'repo.gpg')));
    await assert.rejects(fetchSources({ sourcesPath: badIndex.sources, out: badIndex.out }), /Packages\.gz has SHA-256 [0-9a-f]{64}; InRelease says 0{64}/);
  } finally {
    await repo.close();
  }
});
