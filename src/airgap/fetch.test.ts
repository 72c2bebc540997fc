/** Fetch against a local HTTP server on 127.0.0.1 (never any other address). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VigilError } from '../util/errors.ts';
import { fetchSources, parseSources } from './fetch.ts';

interface Vendor {
  base: string;
  requests: { url: string; range?: string }[];
  /** The next GET of this path sends only this many bytes of its body, then cuts the connection. */
  cutAfter: Map<string, number>;
  ignoreRange: boolean;
  close(): Promise<void>;
}

async function vendor(files: Record<string, Buffer>): Promise<Vendor> {
  const v: Vendor = { base: '', requests: [], cutAfter: new Map(), ignoreRange: false, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    v.requests.push({ url, range: req.headers.range });
    if (url === '/moved') {
      res.writeHead(302, { location: '/catalog.xml' }).end();
      return;
    }
    const body = files[url];
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && !v.ignoreRange) {
      start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    } else {
      res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
    }
    const cut = v.cutAfter.get(url);
    if (cut !== undefined) {
      v.cutAfter.delete(url);
      res.write(body.subarray(start, start + cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body.subarray(start));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  v.base = `http://127.0.0.1:${port}`;
  v.close = () => new Promise((resolve) => server.close(() => resolve()));
  return v;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup(files: Record<string, Buffer>, lines: (base: string) => string) {
  const v = await vendor(files);
  const d = await mkdtemp(join(tmpdir(), 'vigil-airgap-fetch-'));
  await writeFile(join(d, 'sources.txt'), lines(v.base));
  const run = () => fetchSources({ sourcesPath: join(d, 'sources.txt'), out: join(d, 'out') });
  return { v, d, run, out: join(d, 'out') };
}

const BIN = randomBytes(300_000);
const CATALOG = Buffer.from('<catalog><patch id="kb1"/></catalog>');

test('fetch downloads each source under its path and checks the published SHA-256; a re-run downloads nothing', async (t) => {
  const s = await setup(
    { '/catalog.xml': CATALOG, '/p/kb1.msu': BIN },
    (b) => `# catalog first\n${b}/catalog.xml\n${b}/p/kb1.msu sha256=${sha(BIN)} path=patches/kb1.msu\n`,
  );
  t.after(() => s.v.close());
  const got = await s.run();
  assert.deepEqual(
    got.map((f) => [f.path, f.outcome, f.verified]),
    [
      ['catalog.xml', 'downloaded', false],
      ['patches/kb1.msu', 'downloaded', true],
    ],
  );
  assert.ok((await readFile(join(s.out, 'patches', 'kb1.msu'))).equals(BIN));
  const before = s.v.requests.length;
  const again = await s.run();
  assert.deepEqual(
    again.map((f) => f.outcome),
    ['present', 'present'],
  );
  assert.equal(s.v.requests.length, before, 'a present file is not downloaded again');
});

test('an interrupted download leaves no file under its final name, and the next run resumes with a Range request', async (t) => {
  const s = await setup({ '/kb1.msu': BIN }, (b) => `${b}/kb1.msu sha256=${sha(BIN)}\n`);
  t.after(() => s.v.close());
  s.v.cutAfter.set('/kb1.msu', 100_000);
  await assert.rejects(s.run(), (err: unknown) => {
    assert.ok(err instanceof VigilError && err.code === 'AIRGAP_FETCH', String(err));
    assert.match(err.message, /sources\.txt:1 .*kb1\.msu: download broke off after[\s\S]*fix: run fetch again: it resumes/);
    assert.equal(err.retryable, true);
    return true;
  });
  assert.deepEqual(await readdir(s.out), ['kb1.msu.partial']);
  const partial = (await stat(join(s.out, 'kb1.msu.partial'))).size;
  assert.ok(partial > 0 && partial < BIN.length);
  const [f] = await s.run();
  assert.equal(f!.outcome, 'resumed');
  assert.equal(s.v.requests.at(-1)!.range, `bytes=${partial}-`);
  assert.ok((await readFile(join(s.out, 'kb1.msu'))).equals(BIN));
  assert.deepEqual(await readdir(s.out), ['kb1.msu']);
});

test('a server that ignores the Range header: the download starts over and is still right', async (t) => {
  const s = await setup({ '/kb1.msu': BIN }, (b) => `${b}/kb1.msu sha256=${sha(BIN)}\n`);
  t.after(() => s.v.close());
  s.v.cutAfter.set('/kb1.msu', 50_000);
  await assert.rejects(s.run());
  s.v.ignoreRange = true;
  const [f] = await s.run();
  assert.equal(f!.outcome, 'downloaded');
  assert.ok((await readFile(join(s.out, 'kb1.msu'))).equals(BIN));
});

test('a checksum mismatch is refused and leaves neither the file nor a partial one', async (t) => {
  const wrong = sha(Buffer.from('something else'));
  const s = await setup({ '/kb1.msu': BIN }, (b) => `${b}/kb1.msu sha256=${wrong}\n`);
  t.after(() => s.v.close());
  await assert.rejects(s.run(), (err: unknown) => {
    assert.ok(err instanceof VigilError && err.code === 'AIRGAP_FETCH');
    assert.match(err.message, new RegExp(`SHA-256 of the download is ${sha(BIN)}, not the published ${wrong}; the file was removed`));
    return true;
  });
  assert.deepEqual(await readdir(s.out), []);
});

test('a redirect is followed; an HTTP error names the line and the URL', async (t) => {
  const s = await setup({ '/catalog.xml': CATALOG }, (b) => `${b}/moved path=catalog.xml\n${b}/gone.msu\n`);
  t.after(() => s.v.close());
  await assert.rejects(s.run(), /sources\.txt:2 http:\/\/127\.0\.0\.1:\d+\/gone\.msu: answered HTTP 404/);
  assert.ok((await readFile(join(s.out, 'catalog.xml'))).equals(CATALOG));
});

test('a wrong sources file: every wrong line at once, each with its line, field and fix', () => {
  const text = [
    '# vendor catalog',
    'https://vendor.example/catalog.xml',
    'ftp://vendor.example/x.msu',
    'not-a-url',
    'https://vendor.example/a.msu sha256=abc',
    'https://vendor.example/b.msu checksum=abc',
    'https://vendor.example/c.msu path=../../etc/passwd',
    'https://vendor.example/other/catalog.xml',
    'https://user:pw@vendor.example/d.msu',
  ].join('\n');
  assert.throws(
    () => parseSources(text, 'sources.txt'),
    (err: unknown) => {
      assert.ok(err instanceof VigilError && err.code === 'AIRGAP_SOURCES');
      assert.deepEqual(
        err.problems.map((p) => p.where),
        [
          'sources.txt:3 url',
          'sources.txt:4 url',
          'sources.txt:5 sha256',
          'sources.txt:6 checksum',
          'sources.txt:7 path',
          'sources.txt:8 path',
          'sources.txt:9 url',
        ],
      );
      assert.match(err.message, /sources\.txt:8 path: "catalog\.xml" is also the path of line 2/);
      assert.doesNotMatch(err.message, /pw/, 'a password in a URL is never repeated');
      return true;
    },
  );
});
