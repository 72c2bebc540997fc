/**
 * Database failover as a client sees it through the proxy's :5000: the time from killing the
 * primary's machine to the next acknowledged write, over several rounds, for Vigil's timers and
 * for Patroni's defaults with the seed's HAProxy checks, both run here in one process.
 *
 *   npx tsx bench/db-failover.ts [--rounds 5] [--profile vigil|patroni-defaults]
 */
import { parseArgs } from 'node:util';
import { withRole } from '../src/config/schema.ts';
import { findPrimary, hasSyncStandby, labDown, labKill, labRevive, labUp, type LabHandle } from '../src/lab/lab.ts';
import type { LabShape } from '../src/lab/topology.ts';
import { AckWriter } from '../src/lab/writer.ts';
import { waitFor } from '../src/util/exec.ts';

const PROFILES: Record<string, LabShape['timers']> = {
  vigil: {},
  // Patroni's documented defaults; HAProxy as the seed's guide sets it (inter 3s fall 3 rise 2).
  'patroni-defaults': { ttlSeconds: 30, loopWaitSeconds: 10, retryTimeoutSeconds: 10, proxyCheckIntervalMs: 3000, proxyQuickCheckIntervalMs: 3000, proxyFallCount: 3, proxyRiseCount: 2 },
};

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, profile: { type: 'string', multiple: true } } });
const rounds = Number(values.rounds);
const profiles = values.profile ?? Object.keys(PROFILES);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function measure(lab: LabHandle, name: string): Promise<{ times: number[]; lost: number }> {
  const { cluster, secrets } = lab;
  const proxy = withRole(cluster, 'proxy')[0]!;
  const writer = new AckWriter({ host: proxy.address, port: cluster.proxy.postgresPort, user: cluster.database.appUser, password: secrets.appDbPassword, database: cluster.database.appDatabase, intervalMs: 20 });
  await writer.prepare();
  writer.start();
  const times: number[] = [];
  try {
    for (let r = 1; r <= rounds; r++) {
      const steadyFrom = performance.now();
      await waitFor('steady writes', async () => (writer.acked.filter((s) => s.atMs > steadyFrom).length >= 25 ? true : undefined), 60_000, 100);
      const old = await waitFor('a primary', () => findPrimary(cluster), 60_000);
      const t0 = performance.now();
      await labKill(old.name);
      // Writes in flight while the machine dies may still be acknowledged by it; the outage ends
      // with the first write the other machine acknowledges.
      const first = await waitFor('a write on the new primary', async () => writer.firstAfter(t0, old.address), 180_000, 20);
      const s = (first.atMs - t0) / 1000;
      times.push(s);
      console.log(`${name} round ${r}: killed ${old.name}, writes back after ${s.toFixed(2)} s on ${first.server}`);
      await labRevive(old.name);
      await waitFor(`${old.name} back as a replica`, async () => ((await fetch(`http://${old.address}:${cluster.database.patroniPort}/replica`, { signal: AbortSignal.timeout(1000) })).status === 200 ? true : undefined), 180_000, 500);
      // In synchronous mode Patroni promotes only the machine recorded as synchronous standby; a
      // replica that has rejoined but is not yet recorded would (rightly) not be promoted.
      const primary = await waitFor('a primary', () => findPrimary(cluster), 60_000);
      await waitFor('a synchronous standby again', () => hasSyncStandby(cluster, primary), 180_000, 500);
    }
  } finally {
    await writer.stop();
  }
  return { times, lost: (await writer.missing()).length };
}

const results: { name: string; times: number[]; lost: number }[] = [];
for (const name of profiles) {
  await labDown();
  console.log(`--- ${name}: lab up (distributed, synchronous)`);
  const lab = await labUp({ topology: 'distributed', timers: PROFILES[name] });
  try {
    results.push({ name, ...(await measure(lab, name)) });
  } finally {
    await labDown();
  }
}

console.log(`\nDatabase failover through :5000, kill of the primary's machine, ${rounds} rounds (seconds to the next acknowledged write)`);
console.log('| profile | median | worst | rounds | acknowledged writes lost |');
console.log('|---|---|---|---|---|');
for (const r of results) console.log(`| ${r.name} | ${median(r.times).toFixed(2)} | ${Math.max(...r.times).toFixed(2)} | ${r.times.map((t) => t.toFixed(1)).join(', ')} | ${r.lost} |`);
