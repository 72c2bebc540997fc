/**
 * Air-gap bundles on one machine: the time to bundle, verify and import (the local half) a
 * directory of random files, beside a baseline in the same process: a plain streamed copy of the
 * same files with a SHA-256 of each (what any careful copy costs). Also the process's peak
 * memory, which stays far below the data size because everything streams.
 *
 *   npx tsx bench/airgap.ts [--mib 256] [--files 4] [--part-mib 100] [--rounds 3]
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createBundle } from '../src/airgap/bundle.ts';
import { importBundle } from '../src/airgap/import.ts';
import { initKeys, readTrust } from '../src/airgap/keys.ts';
import { verifyBundle } from '../src/airgap/verify.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    files: { type: 'string', default: '4' },
    'part-mib': { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
  },
});
const mib = Number(values.mib);
const fileCount = Number(values.files);
const rounds = Number(values.rounds);
const partBytes = Number(values['part-mib']) * 1024 * 1024;

async function randomFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  const block = Buffer.alloc(1 << 20);
  for (let left = bytes; left > 0; left -= block.length) {
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
    await fh.write(block.subarray(0, Math.min(left, block.length)));
  }
  await fh.close();
}

async function baselineCopy(src: string, dst: string, names: string[]): Promise<void> {
  await mkdir(dst);
  for (const n of names) {
    const h = createHash('sha256');
    const r = createReadStream(join(src, n));
    r.on('data', (c) => h.update(c as Buffer));
    await pipeline(r, createWriteStream(join(dst, n)));
    h.digest('hex');
  }
}

const seconds = async (fn: () => Promise<unknown>): Promise<number> => {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
};

const d = await mkdtemp(join(tmpdir(), 'vigil-bench-airgap-'));
try {
  const src = join(d, 'src');
  await mkdir(src);
  const names = Array.from({ length: fileCount }, (_, i) => `patch-${i}.bin`);
  for (const n of names) await randomFile(join(src, n), Math.floor((mib * 1024 * 1024) / fileCount));
  await initKeys(join(d, 'k.pem'), join(d, 'trust.json'));
  const { chain } = await readTrust(join(d, 'trust.json'));
  const rssBefore = process.resourceUsage().maxRSS / 1024;
  const rows: string[] = [];
  for (let r = 1; r <= rounds; r++) {
    const copy = await seconds(() => baselineCopy(src, join(d, `copy-${r}`), names));
    const bundle = join(d, `bundle-${r}`);
    const b = await seconds(() => createBundle({ dir: src, keyPath: join(d, 'k.pem'), out: bundle, maxPartBytes: partBytes }));
    const v = await seconds(() => verifyBundle(bundle, { trust: chain, trustSource: 'trust.json' }));
    const i = await seconds(() => importBundle({ bundle, target: join(d, 'patches'), trust: chain, trustPath: join(d, 'trust.json') }));
    rows.push(`round ${r}: baseline copy+sha256 ${copy.toFixed(2)} s | bundle ${b.toFixed(2)} s | verify ${v.toFixed(2)} s | import ${i.toFixed(2)} s`);
    await rm(join(d, `copy-${r}`), { recursive: true });
  }
  console.log(`${mib} MiB in ${fileCount} files, parts of ${values['part-mib']} MiB`);
  for (const row of rows) console.log(row);
  console.log(
    `peak RSS of this process: ${rssBefore.toFixed(0)} MiB before the first round, ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB after the last`,
  );
} finally {
  await rm(d, { recursive: true, force: true });
}
