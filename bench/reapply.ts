/**
 * What a client sees while `vigil apply` restarts the daemons of a running cluster (a changed
 * cluster file restarts every agent and the observer), measured on the lab:
 *
 * 1. Vigil: the cluster file gets a new comment line, then `vigil apply`: agents one at a time,
 *    standbys first, the active machine's last with its HAProxy health check paused meanwhile.
 * 2. Baseline, in the same process and on the same cluster: what a plain restart does (and what
 *    apply did before it rolled): `systemctl restart` of every agent at once and of the observer.
 *
 * A client polls the application's health URL through HAProxy every 20 ms throughout; each round
 * counts its failed requests (an error or any status but 200) from the restart until 4 s after
 * it ended. A restarting agent does not answer HAProxy's role check for a few hundred
 * milliseconds, which takes the active machine out of HAProxy only when two checks in a row
 * fall into that gap, so the baseline fails in some rounds only: run enough of them.
 *
 *   npx tsx bench/reapply.ts [--rounds 10]
 */
import { appendFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { withRole } from '../src/config/schema.ts';
import { labUpBare } from '../src/lab/bare.ts';
import { labDown, openLab } from '../src/lab/lab.ts';
import { LAB_DIR, clusterFilePath } from '../src/lab/paths.ts';
import { HttpProbe } from '../src/lab/probe.ts';
import { LabShell } from '../src/lab/shell.ts';
import { UNITS } from '../src/layout/units.ts';
import { vigil } from '../test/lab/run-vigil.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' } } });
const rounds = Number(values.rounds);
const SETTLE_MS = 4000;

async function must(args: string[]): Promise<void> {
  const r = await vigil(args);
  if (r.code !== 0) throw new Error(`vigil ${args.join(' ')} failed:\n${r.out}`);
}

interface Outcome {
  failed: number;
  /** From the first failed request to the last, in ms; 0 when none failed. */
  spanMs: number;
}

async function measure(probe: HttpProbe, act: () => Promise<void>): Promise<Outcome> {
  const t0 = performance.now();
  await act();
  await new Promise((res) => setTimeout(res, SETTLE_MS));
  const failed = probe.answers.filter((a) => a.atMs > t0 && a.node === null);
  return { failed: failed.length, spanMs: failed.length ? failed.at(-1)!.atMs - failed[0]!.atMs : 0 };
}

await labDown();
try {
  const answers = await labUpBare({ topology: 'distributed' }, () => {});
  await must(['init', '--answers', answers, '--accept-host-keys', '-d', LAB_DIR]);
  await must(['apply', '-c', clusterFilePath()]);
  const lab = await openLab();
  const proxy = withRole(lab.cluster, 'proxy')[0]!;
  const agents = lab.cluster.machines.filter((m) => m.roles.includes('app') || m.roles.includes('db'));
  const observers = withRole(lab.cluster, 'observer');
  const probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}${lab.cluster.application.healthPath}`, 20);
  probe.start();
  await new Promise((res) => setTimeout(res, 2000));

  const vigilRounds: Outcome[] = [];
  const baseRounds: Outcome[] = [];
  for (let i = 0; i < rounds; i++) {
    vigilRounds.push(
      await measure(probe, async () => {
        await appendFile(clusterFilePath(), `# bench/reapply.ts round ${i + 1}\n`);
        await must(['apply', '-c', clusterFilePath()]);
      }),
    );
    baseRounds.push(
      await measure(probe, async () => {
        const restart = (name: string, unit: string) => new LabShell(name).exec(['systemctl', 'restart', unit], { timeoutMs: 60_000 });
        await Promise.all([...agents.map((m) => restart(m.name, UNITS.agent)), ...observers.map((m) => restart(m.name, UNITS.observer))]);
      }),
    );
    const [v, b] = [vigilRounds.at(-1)!, baseRounds.at(-1)!];
    console.log(
      `round ${i + 1}: vigil apply ${v.failed} failed request(s)${v.failed ? ` over ${v.spanMs.toFixed(0)} ms` : ''}; plain restart ${b.failed}${b.failed ? ` over ${b.spanMs.toFixed(0)} ms` : ''}`,
    );
  }
  await probe.stop();

  const summary = (xs: Outcome[]) => {
    const hit = xs.filter((x) => x.failed > 0);
    return `${hit.length} of ${xs.length} | ${xs.reduce((n, x) => n + x.failed, 0)} | ${hit.length ? Math.max(...hit.map((x) => x.spanMs)).toFixed(0) : '0'}`;
  };
  console.log(`\ndistributed, ${rounds} round(s), a request every 20 ms through HAProxy:`);
  console.log('| restart of every agent and the observer | rounds with a failed request | failed requests in all | longest outage (ms) |\n|---|---|---|---|');
  console.log(`| \`vigil apply\` (rolling, the active machine's check paused) | ${summary(vigilRounds)} |`);
  console.log(`| baseline: plain \`systemctl restart\`, all at once | ${summary(baseRounds)} |`);
} finally {
  await labDown();
}
