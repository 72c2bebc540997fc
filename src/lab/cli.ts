/**
 * `vigil lab ...`: the command-line face of src/lab. Added to `vigil` by a checkout's entry
 * (bin/vigil.js, through src/cli/checkout.ts), never to the artifact's CLI: the lab runs from a
 * checkout only.
 */
import { dirname } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { LAB_UNITS, type LabUnit } from './boot.ts';
import { MAX_LATENCY_MS } from './chaos-plan.ts';
import { PROCESS_NAMES, type ProcessName } from './procs.ts';
import type { LabShape } from './topology.ts';
import type { Release } from './rootfs.ts';
import { VigilError, problem } from '../util/errors.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be a whole number');
  return n;
};

/** Loaded on use: a checkout's other commands start faster without the lab's modules. */
const labModule = () => import('./lab.ts');

const say = (line: string): void => void process.stdout.write(`${line}\n`);

function processName(v: string): ProcessName {
  if (!(PROCESS_NAMES as readonly string[]).includes(v)) throw new InvalidArgumentError(`must be one of ${PROCESS_NAMES.join(', ')}`);
  return v as ProcessName;
}

function labUnit(v: string): LabUnit {
  if (!(v in LAB_UNITS)) throw new InvalidArgumentError(`must be one of ${Object.keys(LAB_UNITS).join(', ')}`);
  return v as LabUnit;
}

/** `entry: 10.213.0.40 (floating, keepalived) held by proxy1`, or what is wrong with it. */
export function entryLine(e: { entryPoint: string; floating: boolean; holders: string[] }): string {
  if (!e.floating) return `entry: ${e.entryPoint} (the first proxy machine's own address)`;
  const held =
    e.holders.length === 1
      ? `held by ${e.holders[0]}`
      : e.holders.length === 0
        ? 'held by no machine: clients reach nothing'
        : `held by ${e.holders.join(' and ')} at once: clients reach either`;
  return `entry: ${e.entryPoint} (floating, keepalived) ${held}`;
}

export function registerLab(program: Command): void {
  const cmd = program.command('lab').description('a cluster on this machine in network namespaces, for demos and tests (needs root)');

  cmd
    .command('up')
    .description('bring a topology up with the real components and the reference application')
    .addOption(new Option('--topology <name>', 'pair or distributed').choices(['pair', 'distributed']).default('distributed'))
    .option('--app-nodes <n>', 'app machines', int)
    .option('--db-nodes <n>', 'database machines (distributed)', int)
    .option('--etcd <n>', 'etcd members: 1, 3, 5 or 7', int)
    .option('--proxies <n>', 'HAProxy on this many machines of their own (proxy1, proxy2, ...) instead of on the observer machine', int)
    .option(
      '--observers <n>',
      'with 2 or more: an observer and an etcd member on each proxy machine (proxy1, proxy2, ...; --proxies defaults to this count, --etcd to 3) and no observer machine',
      int,
    )
    .addOption(new Option('--replication <mode>', 'synchronous or asynchronous').choices(['synchronous', 'asynchronous']))
    .option('--keep-on-failure', 'leave a lab that failed to come up as it is, for inspection')
    .addOption(
      new Option(
        '--backend-tls <verify>',
        'HTTPS from the proxy to nginx on the app machines on :443 (application.backendTls, certificates from the cluster CA): `verify`, or `no-verify` for verify none',
      ).choices(['verify', 'no-verify']),
    )
    .addOption(
      new Option(
        '--release <name>',
        "what the machines run: a Debian release's root filesystem, booted with systemd (trixie: PostgreSQL 17, Patroni 4; bookworm: PostgreSQL 15, Patroni 3.0)",
      )
        .choices(['trixie', 'bookworm'])
        .default('trixie'),
    )
    .option('--bare', 'machines that run only sshd (root password in the answers file it writes), for `vigil init` and `vigil apply`')
    .option('--ssh-user <name>', 'with --bare: an account of this name with password-less sudo on each machine, named in the answers instead of root')
    .action(
      async (o: {
        topology: LabShape['topology'];
        appNodes?: number;
        dbNodes?: number;
        etcd?: number;
        proxies?: number;
        observers?: number;
        replication?: LabShape['replication'];
        keepOnFailure?: boolean;
        bare?: boolean;
        sshUser?: string;
        release?: Release;
        backendTls?: 'verify' | 'no-verify';
      }) => {
        const started = performance.now();
        const shape: LabShape = {
          topology: o.topology,
          appNodes: o.appNodes,
          dbNodes: o.dbNodes,
          etcd: o.etcd,
          ...(o.proxies !== undefined ? { proxies: o.proxies } : {}),
          ...(o.observers !== undefined ? { observers: o.observers } : {}),
          replication: o.replication,
          ...(o.release ? { release: o.release } : {}),
          ...(o.backendTls ? { backendTls: { verify: o.backendTls === 'verify' } } : {}),
        };
        if (o.bare) {
          const { labUpBare } = await import('./bare.ts');
          const answers = await labUpBare(shape, say, { sshUser: o.sshUser });
          say(`bare lab up in ${((performance.now() - started) / 1000).toFixed(1)} s; next: \`vigil init --answers ${answers} --accept-host-keys\``);
          return;
        }
        if (o.sshUser) throw new VigilError('USAGE', [problem('--ssh-user', 'only goes with --bare', 'add --bare, or leave --ssh-user out')]);
        await (await labModule()).labUp(shape, say, { keepOnFailure: o.keepOnFailure });
        say(`lab up in ${((performance.now() - started) / 1000).toFixed(1)} s; \`vigil lab status\` shows it, \`vigil lab down\` removes it`);
      },
    );

  cmd
    .command('rootfs')
    .description(
      "build a Debian release's images for lab machines with mmdebstrap: the full root filesystem, the bare one and the package mirror (once; again only when a package list changes)",
    )
    .addOption(new Option('--release <name>', 'trixie or bookworm').choices(['trixie', 'bookworm']).default('trixie'))
    .action(async (o: { release: Release }) => {
      const { ensureRelease } = await import('./rootfs.ts');
      const dirs = await ensureRelease(o.release, say);
      say(`${o.release}: root filesystem, bare root filesystem and package mirror ready under ${dirname(dirs[0]!)}`);
    });

  cmd
    .command('status')
    .description('machines, addresses and the processes on each, and what the machines run on')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const lab = await labModule();
      const machines = await lab.labStatus();
      const platform = await lab.labPlatform();
      const entry = await lab.labEntry();
      if (o.json) {
        const entryJson = entry && {
          entryPoint: entry.entryPoint,
          entryFloating: entry.floating,
          // The one machine holding it; null when none or several do (entryHolders lists them).
          entryHolder: entry.holders.length === 1 ? entry.holders[0] : null,
          entryHolders: entry.holders,
        };
        // The observer machines and the acting one (etcd's leader key), null when none acts or etcd does not answer.
        const obs = await lab.labObservers();
        const observers = { observers: obs.machines, actingObserver: obs.acting, ...(obs.error ? { actingObserverError: obs.error } : {}) };
        const metrics = await lab.labMetrics();
        // The dashboard's URL, and who logs in with which password file (docs/dashboard.md).
        const d = await lab.labDashboard();
        const dashboard = {
          dashboard: d?.url ?? null,
          dashboardLogin: d && { user: d.user, passwordFile: d.passwordFile },
          dashboardViewer: d?.viewer ?? null,
        };
        say(JSON.stringify({ ...platform, ...entryJson, ...observers, machines: machines.map(({ pids: _p, ...m }) => m), metrics, ...dashboard }, null, 2));
        return;
      }
      say(platform.summary);
      if (entry) say(entryLine(entry));
      const obs = await lab.labObservers();
      if (obs.machines.length)
        say(
          `observer: ${obs.acting ? `acting on ${obs.acting}` : `none acting${obs.error ? ` (etcd: ${obs.error})` : ''}`}${obs.machines.length > 1 ? ` (observers on ${obs.machines.join(', ')})` : ''}`,
        );
      const d = await lab.labDashboard();
      if (d) say(`dashboard: ${d.url} (user ${d.user}, password in ${d.passwordFile})`);
      for (const m of machines) {
        const procs = Object.entries(m.processes)
          .filter(([n]) => n !== 'other')
          .map(([n, c]) => (c > 1 ? `${n}×${c}` : n));
        say(`${m.name.padEnd(10)} ${m.address.padEnd(14)} ${m.roles.join(',').padEnd(20)} ${procs.join(' ') || '(nothing running)'}`);
      }
    });

  cmd
    .command('demo')
    .description('create a ticket through the proxy and read it back')
    .action(async () => (await import('./demo.ts')).labDemo(say));

  cmd
    .command('down')
    .description("remove every process, namespace, link and file of the lab (also a crashed run's)")
    .action(async () => (await labModule()).labDown(say));

  cmd
    .command('exec')
    .description('run a command inside a lab machine')
    .argument('<host>')
    .argument('<cmd...>')
    .action(async (host: string, argv: string[]) => {
      process.exitCode = await (await labModule()).labExec(host, argv);
    });

  cmd
    .command('kill')
    .description('kill every process of a machine, or only the processes of one name (SIGKILL)')
    .argument('<host>')
    .argument('[process]', PROCESS_NAMES.join('|'), processName)
    .action(async (h: string, p?: ProcessName) => {
      const lab = await labModule();
      if (p) say(`${h}: SIGKILL sent to ${await lab.labSignal(h, p, 'SIGKILL')} ${p} process(es)`);
      else {
        await lab.labKill(h);
        say(`${h}: every process killed`);
      }
    });
  cmd
    .command('revive')
    .description('start a killed machine again, as a returning machine')
    .argument('<host>')
    .action(async (h: string) => {
      await (await labModule()).labRevive(h);
      say(`${h}: started again`);
    });
  for (const [name, signal, what] of [
    ['stop', 'SIGSTOP', 'pause'],
    ['cont', 'SIGCONT', 'resume'],
  ] as const) {
    cmd
      .command(name)
      .description(`${what} one process of a machine (${signal})`)
      .argument('<host>')
      .argument('<process>', PROCESS_NAMES.join('|'), processName)
      .action(async (h: string, p: ProcessName) => {
        const n = await (await labModule()).labSignal(h, p, signal);
        say(`${h}: ${signal} sent to ${n} ${p} process(es)`);
      });
  }
  for (const [name, what] of [
    ['start', 'start one component of a machine again (`systemctl start` of its unit)'],
    ['shutdown', 'stop one component of a machine as an operator would (`systemctl stop`: systemd does not bring it back)'],
  ] as const) {
    cmd
      .command(name)
      .description(what)
      .argument('<host>')
      .argument('<component>', Object.keys(LAB_UNITS).join('|'), labUnit)
      .action(async (h: string, p: LabUnit) => {
        const lab = await labModule();
        await (name === 'start' ? lab.labStart(h, p) : lab.labStopUnit(h, p));
        say(`${h}: ${LAB_UNITS[p]} ${name === 'start' ? 'started' : 'stopped'}`);
      });
  }

  cmd
    .command('fill')
    .description("fill a machine's disk under a directory (moved onto a small tmpfs of its own), until `lab unfill`")
    .argument('<host>')
    .argument('[path]', 'directory on the machine', '/var/lib/vigil/app')
    .action(async (h: string, p: string) => {
      await (await labModule()).labFill(h, p);
      say(`${h}: ${p} is full`);
    });
  cmd
    .command('unfill')
    .description('remove the ballast `lab fill` wrote')
    .argument('<host>')
    .argument('[path]', 'directory on the machine', '/var/lib/vigil/app')
    .action(async (h: string, p: string) => {
      await (await labModule()).labUnfill(h, p);
      say(`${h}: ${p} has space again`);
    });
  cmd
    .command('cut')
    .description('cut a machine off from the others (or from --from machines)')
    .argument('<host>')
    .option('--from <hosts...>', 'only from these machines')
    .option('--one-way', 'drop only what the peers send to the machine; its own packets still leave')
    .option('--network', 'from the whole network: every machine, this host (the clients) and ARP, both ways')
    .action(async (h: string, o: { from?: string[]; oneWay?: boolean; network?: boolean }) => {
      if (o.network && (o.from || o.oneWay)) throw new InvalidArgumentError('--network cuts every packet both ways: without --from or --one-way');
      if (o.network) {
        await (await labModule()).labIsolate(h);
        say(`${h}: cut off from the network (every machine, this host, ARP)`);
        return;
      }
      await (await labModule()).labCut(h, o.from ?? [], Boolean(o.oneWay));
      say(`${h}: cut off${o.from ? ` from ${o.from.join(', ')}` : ''}${o.oneWay ? ' (one way)' : ''}`);
    });
  cmd
    .command('loss')
    .description("drop a share of a machine's packets, both ways, at random (undone by heal)")
    .argument('<host>')
    .argument('<percent>', 'of the packets, 1 to 100', int)
    .action(async (h: string, percent: number) => {
      if (percent < 1 || percent > 100) throw new InvalidArgumentError('percent must be 1 to 100');
      await (await labModule()).labLoss(h, percent);
      say(`${h}: ${percent}% of its packets dropped each way (\`vigil lab heal\` ends it)`);
    });
  cmd
    .command('latency')
    .description('delay every packet a machine sends and receives, both ways (undone by heal)')
    .argument('<host>')
    .argument('<ms>', `milliseconds each way, 1 to ${MAX_LATENCY_MS}`, int)
    .action(async (h: string, ms: number) => {
      if (ms < 1 || ms > MAX_LATENCY_MS) throw new InvalidArgumentError(`ms must be 1 to ${MAX_LATENCY_MS}`);
      await (await labModule()).labLatency(h, ms);
      say(`${h}: its packets held ${ms} ms each way, a round trip ${2 * ms} ms longer (\`vigil lab heal\` ends it)`);
    });
  cmd
    .command('block')
    .description('close one TCP port of a machine to the other machines, as a firewall would (undone by heal)')
    .argument('<host>')
    .argument('<port>', 'TCP port', int)
    .action(async (h: string, port: number) => {
      if (port < 1 || port > 65535) throw new InvalidArgumentError('port must be 1 to 65535');
      const { machineOf, requireState } = await import('./state.ts');
      machineOf(await requireState(), h);
      await (await import('./net.ts')).blockPort(h, port);
      say(`${h}: TCP port ${port} blocked for the other machines (\`vigil lab heal\` opens it again)`);
    });
  cmd
    .command('chaos')
    .description(
      'a randomized, reproducible run of faults on the running lab with the checker on; a report per fault kind (exit 1 on a violation or a lost write)',
    )
    .option(
      '--minutes <n>',
      'inject faults for this long (the fault under way finishes)',
      (v) => {
        const n = Number(v);
        if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
        return n;
      },
      3,
    )
    .option('--seed <n>', 'the seed of the schedule (printed by every run; default: a random one)', int)
    .option('--faults <list>', 'comma-separated fault kinds (default: all; `vigil lab chaos --faults list` names them)')
    .option('--except <list>', 'comma-separated fault kinds left out')
    .action(async (o: { minutes: number; seed?: number; faults?: string; except?: string }) => {
      const plan = await import('./chaos-plan.ts');
      if (o.faults === 'list') {
        say(`fault kinds: ${plan.FAULT_KINDS.join(', ')}`);
        return;
      }
      let kinds;
      try {
        kinds = plan.parseKinds(o.faults, o.except);
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
      const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
      const lab = await labModule();
      const { runChaos } = await import('./chaos.ts');
      // Ctrl-C: the fault under way is recovered and the report printed; a second one exits.
      const stop = new AbortController();
      process.once('SIGINT', () => {
        say('chaos: interrupted; recovering the fault under way (Ctrl-C again to exit at once, then `vigil lab heal`)');
        stop.abort();
        process.once('SIGINT', () => process.exit(130));
      });
      const report = await runChaos(await lab.openLab(), { seed, minutes: o.minutes, kinds, signal: stop.signal }, say);
      say(report.text);
      if (!report.ok) {
        say(
          `chaos: NOT OK (replay with \`vigil lab chaos --seed ${seed} --minutes ${o.minutes}${o.faults ? ` --faults ${o.faults}` : ''}${o.except ? ` --except ${o.except}` : ''}\`)`,
        );
        process.exitCode = 1;
      }
    });
  cmd
    .command('heal')
    .description('undo every cut and blocked port')
    .action(async () => {
      await (await labModule()).labHeal();
      say('every cut healed');
    });
}
