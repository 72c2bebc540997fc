import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore, StoreError, type StoredEvent, type VigilStore } from '../etcd/store.ts';
import { closeAll, startTestEtcd, type TestEtcd } from '../testing/etcd.ts';
import { waitFor } from '../util/exec.ts';
import { EventFileError, EventLog } from './log.ts';

describe('EventLog against a real etcd', () => {
  let etcd: TestEtcd;
  let dir: string;
  const stores: VigilStore[] = [];
  let n = 0;
  const open = async (cluster = `ev${++n}`) => {
    const s = await openStore({ endpoints: [etcd.endpoint], cluster, callTimeoutMs: 3000 });
    stores.push(s);
    return s;
  };
  const lines = async (file: string) =>
    (await readFile(file, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as StoredEvent);

  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), 'vigil-events-'));
  });
  after(async () => {
    try {
      await closeAll(stores);
    } finally {
      await etcd?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('numbers events in order, lists the newest, and writes one line each (creating the directory)', async () => {
    const s = await open();
    const file = join(dir, 'a', 'log', 'events.jsonl');
    const log = new EventLog(s.events, { file });
    for (let i = 1; i <= 5; i++) await log.append({ type: 'node-lost', node: `app${i}`, message: `event ${i}` });
    const all = await log.list(10);
    assert.deepEqual(
      all.map((e) => [e.seq, e.message]),
      [1, 2, 3, 4, 5].map((i) => [i, `event ${i}`]),
    );
    assert.deepEqual(
      (await log.list(2)).map((e) => e.seq),
      [4, 5],
    );
    const written = await lines(file);
    assert.deepEqual(written, all);
    assert.ok(written.every((e) => typeof e.at === 'string' && !Number.isNaN(Date.parse(e.at))));
  });

  it('keeps only the newest N in etcd; the file keeps everything', async () => {
    const s = await open();
    const file = join(dir, 'prune.jsonl');
    const log = new EventLog(s.events, { file, keep: 3 });
    for (let i = 1; i <= 7; i++) await log.append({ type: 'fence', message: `e${i}` });
    assert.deepEqual(
      (await log.list(100)).map((e) => e.seq),
      [5, 6, 7],
    );
    assert.equal((await lines(file)).length, 7);
  });

  it('concurrent writers never share a sequence number', async () => {
    const s1 = await open();
    const s2 = await open(s1.cluster);
    const l1 = new EventLog(s1.events, { file: null });
    const l2 = new EventLog(s2.events, { file: null });
    const stored = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? l1 : l2).append({ type: 'activate', message: `m${i}` }, { timeoutMs: 20_000 })),
    );
    const seqs = stored.map((e) => e.seq).sort((a, b) => a - b);
    assert.deepEqual(
      seqs,
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    assert.equal((await l1.list(100)).length, 20);
  });

  it('watch delivers the backlog, then new events in order', async () => {
    const s = await open();
    const log = new EventLog(s.events, { file: null });
    for (let i = 1; i <= 4; i++) await log.append({ type: 'maintenance-on', message: `old ${i}` });
    const got: StoredEvent[] = [];
    const sub = await log.watch((e) => got.push(e), { backlog: 2 });
    try {
      await log.append({ type: 'maintenance-off', message: 'new 1' });
      await log.append({ type: 'maintenance-off', message: 'new 2' });
      await waitFor('four events', async () => (got.length >= 4 ? true : undefined), 3000, 20);
      assert.deepEqual(
        got.map((e) => `${e.seq}:${e.message}`),
        ['3:old 3', '4:old 4', '5:new 1', '6:new 2'],
      );
    } finally {
      await sub.close();
    }
  });

  it('an unwritable file is an EventFileError; the event is still in etcd', async () => {
    const s = await open();
    const notADir = join(dir, 'plain-file');
    await writeFile(notADir, '');
    const log = new EventLog(s.events, { file: join(notADir, 'events.jsonl') });
    await assert.rejects(log.append({ type: 'bootstrap', message: 'x' }), (err: EventFileError) => {
      assert.ok(err instanceof EventFileError);
      assert.equal(err.event.seq, 1);
      return true;
    });
    assert.equal((await log.list(1))[0]?.message, 'x');
  });

  it('when etcd is down the line is still written, without seq, and the StoreError is thrown', async () => {
    const s = await open();
    const file = join(dir, 'down.jsonl');
    const log = new EventLog(s.events, { file });
    try {
      await etcd.pause();
      await assert.rejects(
        log.append({ type: 'node-lost', node: 'app1', message: 'while etcd hangs' }, { timeoutMs: 300 }),
        (err: StoreError) => err.code === 'ETCD_TIMEOUT',
      );
    } finally {
      etcd.resume();
    }
    const [line] = await lines(file);
    assert.equal(line?.message, 'while etcd hangs');
    assert.equal(line?.seq, undefined);
  });
});
