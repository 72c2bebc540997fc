/**
 * `vigil apply` on a running cluster with three etcd members (`vigil lab up --bare --etcd 3`: the
 * observer and both database machines): when every member's etcd.yml differs from what the
 * cluster file renders (drift, or a changed setting), apply rewrites them and restarts the
 * members one at a time, each healthy again before the next, so etcd never loses its majority and
 * the application keeps serving. A second apply finds nothing to change. When each member was
 * down comes from its machine's service manager journal.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, writeFile } from 'node:fs/promises';
import { PATHS, ROOTS } from '../../src/layout/paths.ts';
import { withRole } from '../../src/config/schema.ts';
import { labUpBare } from '../../src/lab/bare.ts';
import { labAdminPki, labDown, labPatroni, labRun, openLab } from '../../src/lab/lab.ts';
import { mtlsFetch } from '../../src/mtls/mtls.ts';
import { LAB_DIR, clusterFilePath, hostPathOf } from '../../src/lab/paths.ts';
import { HttpProbe, describeFailures, type Answer } from '../../src/lab/probe.ts';
import type { Cluster } from '../../src/config/schema.ts';
import { UNITS } from '../../src/layout/units.ts';
import { vigil } from './run-vigil.ts';
import { printJournals, unitJournal } from './journal.ts';

/** When each member answers HTTP at all (any status), polled every 20 ms: each poll's send time (wall clock) and who answered it. */
class MemberWatch {
  readonly samples: { sentAt: number; answered: string[] }[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  constructor(private readonly members: { name: string; address: string }[]) {}
  start(): void {
    this.loop = (async () => {
      // etcd asks every client for a certificate from the cluster CA: the lab admin's.
      const admin = await labAdminPki();
      while (!this.stopped) {
        const sentAt = Date.now();
        const answers = await Promise.all(
          this.members.map((m) =>
            mtlsFetch(`https://${m.address}:2379/health`, { ...admin, timeoutMs: 1000 }).then(
              () => true,
              () => false,
            ),
          ),
        );
        this.samples.push({ sentAt, answered: this.members.filter((_, i) => answers[i]).map((m) => m.name) });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * When each member's etcd was down during a restart: from the old main process's end, in its
 * machine's systemd journal (`journalctl -u`), to the first poll sent after the new one started
 * that it answered. A poll that is merely slow on a loaded machine neither starts nor stretches a
 * down time: only the journal starts one, and a poll ends it at the moment it was sent.
 */
async function downIntervals(machine: string, sinceMs: number, watch: MemberWatch): Promise<{ machine: string; from: number; to: number }[]> {
  const out: { machine: string; from: number; to: number }[] = [];
  let exited: number | null = null;
  for (const { atMs: at, message } of await unitJournal(machine, 'vigil-etcd.service', sinceMs)) {
    // etcd ends on SIGTERM with status 0: systemd says "Deactivated successfully" (else "Main process exited").
    if (/^vigil-etcd\.service: (Deactivated successfully|Main process exited)/.test(message)) exited ??= at;
    else if (/^Started /.test(message) && exited !== null) {
      const up = watch.samples.find((s) => s.sentAt >= at && s.answered.includes(machine));
      out.push({ machine, from: exited, to: up?.sentAt ?? Number.POSITIVE_INFINITY });
      exited = null;
    }
  }
  if (exited !== null) out.push({ machine, from: exited, to: Number.POSITIVE_INFINITY });
  return out;
}

/** A member's Prometheus metrics (etcd's client port). */
async function metrics(address: string): Promise<string> {
  return (await mtlsFetch(`https://${address}:2379/metrics`, { ...(await labAdminPki()), timeoutMs: 3000 })).text;
}

/** When the member's etcd process started (its /metrics), to tell that it was restarted. */
async function startedAt(address: string): Promise<string> {
  const text = await metrics(address);
  const line = /^process_start_time_seconds (\S+)$/m.exec(text);
  assert.ok(line, `no process_start_time_seconds in ${address}'s /metrics`);
  return line[1]!;
}

/**
 * When requests failed, what the machines' units said from 3 s before the first failure to 1 s
 * after the last: the test's failure message says when, and CI's output then says why.
 */
async function printJournalsAround(cluster: Cluster, answers: Answer[]): Promise<void> {
  const failed = answers.filter((a) => a.node === null);
  if (failed.length === 0) return;
  const from = failed[0]!.wallMs - 3000;
  const to = failed.at(-1)!.wallMs + 1000;
  const units: [string, string][] = [
    ...withRole(cluster, 'app').flatMap((m) => [UNITS.agent, UNITS.refapp].map((u): [string, string] => [m.name, u])),
    ...withRole(cluster, 'db').map((m): [string, string] => [m.name, UNITS.patroni]),
    ...withRole(cluster, 'proxy').map((m): [string, string] => [m.name, UNITS.haproxy]),
    ...withRole(cluster, 'observer').map((m): [string, string] => [m.name, UNITS.observer]),
  ];
  await printJournals(units, from, to);
}

describe('vigil apply restarts etcd members one at a time', () => {
  before(async () => {
    await labDown();
    const answers = await labUpBare({ topology: 'distributed', etcd: 3 }, (l) => console.log(`# lab: ${l}`));
    const init = await vigil(['init', '--answers', answers, '--accept-host-keys', '-d', LAB_DIR]);
    assert.equal(init.code, 0, init.out);
    const apply = await vigil(['apply', '-c', clusterFilePath()]);
    assert.equal(apply.code, 0, apply.out);
  });
  after(() => labDown());

  it("every member's etcd.yml changed: restarted one at a time, never two members down, the application serving throughout", async () => {
    const lab = await openLab();
    const members = withRole(lab.cluster, 'etcd');
    assert.deepEqual(
      members.map((m) => m.name),
      ['observer', 'db1', 'db2'],
    );
    const proxy = withRole(lab.cluster, 'proxy')[0]!;
    const probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}${lab.cluster.application.healthPath}`);
    const watch = new MemberWatch(members);
    probe.start();
    watch.start();
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const before = await Promise.all(members.map((m) => startedAt(m.address)));
      const leaderBefore = (
        await Promise.all(members.map(async (m) => ((await metrics(m.address)).includes('\netcd_server_is_leader 1\n') ? m.name : null)))
      ).filter((n) => n !== null);
      assert.equal(leaderBefore.length, 1, `exactly one leader among ${members.map((m) => m.name).join(', ')}`);
      for (const m of members) await appendFile(hostPathOf(m.name, PATHS.etcdConfig), '# edited by hand\n');
      const t0 = performance.now();
      const wall0 = Date.now();
      const r = await vigil(['apply', '-c', clusterFilePath()]);
      assert.equal(r.code, 0, r.out);
      const restarts = r.out.split('\n').filter((l) => l.includes(`restart ${UNITS.etcd} (its files changed; one machine at a time)`));
      assert.equal(restarts.length, 3, r.out);
      await new Promise((res) => setTimeout(res, 2000));
      const after = await Promise.all(members.map((m) => startedAt(m.address)));
      members.forEach((m, i) => assert.notEqual(after[i], before[i], `${m.name}'s etcd was restarted`));
      const down = (await Promise.all(members.map((m) => downIntervals(m.name, wall0, watch)))).flat().sort((a, b) => a.from - b.from);
      console.log(`# etcd down (journal): ${down.map((d) => `${d.machine} ${new Date(d.from).toISOString()} +${d.to - d.from} ms`).join(', ')}`);
      assert.deepEqual(down.map((d) => d.machine).sort(), members.map((m) => m.name).sort(), 'each member was down once, for its restart');
      assert.equal(down.at(-1)!.machine, leaderBefore[0], 'the leader restarted last: one election at most, not one per restart');
      const overlapping = down.filter((d, i) => i > 0 && d.from < down[i - 1]!.to);
      assert.deepEqual(overlapping, [], 'never two members down at once: each restart began after the one before answered again');
      const answers = probe.answers.filter((a) => a.atMs > t0);
      await printJournalsAround(lab.cluster, answers);
      assert.deepEqual(answers.filter((a) => a.node === null).length, 0, `no failed request (${describeFailures(answers)})`);
      assert.match(r.out, /Patroni paused while etcd members restart/, 'Patroni paused for the restarts');
      assert.match(r.out, /Patroni resumed/);
      assert.equal(await patroniPaused(), false, 'Patroni is not left paused');
    } finally {
      await watch.stop();
      await probe.stop();
    }
    const again = await vigil(['apply', '-c', clusterFilePath()]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /apply: no change/);
  });

  it('a pause of Patroni that an interrupted apply left (its mark on the machine) is undone by the next apply', async () => {
    const lab = await openLab();
    const db1 = withRole(lab.cluster, 'db')[0]!;
    const pause = await labRun(db1.name, ['patronictl', '-c', PATHS.patroniConfig, 'pause', '--wait']);
    assert.equal(pause.code, 0, pause.stderr);
    await writeFile(hostPathOf(db1.name, `${ROOTS.data}/apply-paused-patroni`), 'interrupted\n');
    assert.equal(await patroniPaused(), true);
    const r = await vigil(['apply', '-c', clusterFilePath()]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`${db1.name} +services: resume Patroni \\(an interrupted apply left it paused\\)`));
    assert.equal(await patroniPaused(), false);
  });
});

/** Whether Patroni's cluster is paused, as the first db machine's REST API says. */
async function patroniPaused(): Promise<boolean> {
  const lab = await openLab();
  return (await (await labPatroni(lab.cluster, withRole(lab.cluster, 'db')[0]!)).cluster({ timeoutMs: 3000 })).paused;
}
