import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { checkAttachmentName, storeAttachment } from './attachments.ts';
import { HttpError } from './http.ts';

describe('checkAttachmentName', () => {
  it('accepts ordinary names, decoded', () => {
    for (const [raw, name] of [
      ['report.pdf', 'report.pdf'],
      ['Bericht%20M%C3%A4rz%20(v2).pdf', 'Bericht März (v2).pdf'],
      ['a..b', null],
      ['_x-1,2+3=4@5', '_x-1,2+3=4@5'],
    ] as const) {
      if (name === null) assert.throws(() => checkAttachmentName(raw), HttpError);
      else assert.equal(checkAttachmentName(raw), name);
    }
  });

  it('refuses names that are paths, hidden, too long or odd', () => {
    for (const raw of ['..', '.', '.env', 'a/b', 'a%2Fb', '..%2Fx', 'a%5Cb', '%00', 'tab%09', 'x%', 'trailing%20', 'x'.repeat(201), '']) {
      assert.throws(
        () => checkAttachmentName(raw),
        (err: HttpError) => err.status === 400,
        raw,
      );
    }
  });
});

describe('storeAttachment', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-att-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the file and reports size and sha256', async () => {
    const got = await storeAttachment(dir, 7, 'a.txt', Readable.from([Buffer.from('hello '), Buffer.from('world')]), 100);
    assert.deepEqual(got, { size: 11, sha256: 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9' });
    assert.equal(await readFile(join(dir, '7', 'a.txt'), 'utf8'), 'hello world');
  });

  it('leaves neither a partial file nor a temp file when the upload breaks off', async () => {
    async function* broken() {
      yield Buffer.from('part of it');
      throw new Error('client went away');
    }
    await assert.rejects(storeAttachment(dir, 8, 'b.txt', Readable.from(broken()), 100), /client went away/);
    assert.deepEqual(await readdir(join(dir, '8')), []);
  });

  it('stops at the size limit with 413 and keeps the previous version', async () => {
    await storeAttachment(dir, 9, 'c.txt', Readable.from([Buffer.from('old')]), 10);
    await assert.rejects(storeAttachment(dir, 9, 'c.txt', Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), 10), (err: HttpError) => err.status === 413);
    assert.deepEqual(await readdir(join(dir, '9')), ['c.txt']);
    assert.equal(await readFile(join(dir, '9', 'c.txt'), 'utf8'), 'old');
  });
});
