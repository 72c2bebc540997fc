/** Operator commands: `vigil status`, `switchover`, `failover`, `maintenance`, `events`. The work is in src/ops, loaded on use. */
import { Argument, type Command } from 'commander';
import type { OpsOptions } from '../ops/context.ts';
import { labOption, requireLab, type LabTarget } from './checkout.ts';

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const ops = () => import('../ops/context.ts');

/** What the command line names: a cluster file, or (`--lab`, from a checkout) the running lab. */
interface TargetFlags {
  config: string;
  lab?: boolean;
}

export function registerOps(program: Command, lab?: LabTarget): void {
  /** Every operator command reads the cluster file (or the lab's) the same way. */
  const target = (cmd: Command): Command =>
    labOption(cmd.option('-c, --config <file>', 'cluster file (its pki/ directory holds the admin certificate)', 'vigil.yaml'), lab);
  const opts = (o: TargetFlags): OpsOptions => (o.lab ? requireLab(lab).ops : { config: o.config });

  target(program.command('status').description("every machine's role, health and lag; the active node and epoch; maintenance; last events"))
    .option('--json', 'machine-readable output')
    .option('-n, --events <count>', 'how many recent events to show', '5')
    .action(async (o: TargetFlags & { json?: boolean; events: string }) => {
      const { clusterStatus, formatStatus } = await import('../ops/status.ts');
      const s = await (await ops()).withOps(opts(o), (ctx) => clusterStatus(ctx, Number(o.events)));
      say(o.json ? JSON.stringify(s, null, 2) : formatStatus(s));
    });

  target(
    program.command('switchover').description('planned move of the application (and in pair the database primary) to a standby; a brief pause, no lost write'),
  )
    .option('--to <node>', 'the app machine to move to (default: the first ready standby)')
    .action(async (o: TargetFlags & { to?: string }) => {
      const { sendRequest } = await import('../ops/requests.ts');
      const active = await (await ops()).withOps(opts(o), (ctx) => sendRequest(ctx, { kind: 'switchover', to: o.to }, say));
      say(`done: ${active.node} is active at epoch ${active.epoch}`);
    });

  target(program.command('failover').description('make NODE active now (manual failover); the current active machine is fenced'))
    .requiredOption('--to <node>', 'the app machine to make active')
    .action(async (o: TargetFlags & { to: string }) => {
      const { sendRequest } = await import('../ops/requests.ts');
      const active = await (await ops()).withOps(opts(o), (ctx) => sendRequest(ctx, { kind: 'failover', to: o.to }, say));
      say(`done: ${active.node} is active at epoch ${active.epoch}`);
    });

  target(program.command('maintenance').description('on: the observer takes no action (e.g. during upgrades); off: it resumes'))
    .addArgument(new Argument('<state>', 'on or off').choices(['on', 'off']))
    .option('--reason <text>', 'why, for the record', 'maintenance')
    .action(async (state: 'on' | 'off', o: TargetFlags & { reason: string }) => {
      const { setMaintenance } = await import('../ops/requests.ts');
      const changed = await (await ops()).withOps(opts(o), (ctx) => setMaintenance(ctx, state === 'on', o.reason));
      say(
        state === 'on'
          ? `maintenance on${changed ? '' : ' (it already was)'}: the observer takes no action until \`vigil maintenance off\``
          : `maintenance off${changed ? '' : ' (it already was)'}: the observer acts again`,
      );
    });

  target(program.command('events').description('what happened: failovers, fencing, machines lost and back, maintenance'))
    .option('-n, --count <count>', 'how many', '20')
    .option('-f, --follow', 'keep printing new events until interrupted')
    .option('--json', 'one JSON object per line')
    .action(async (o: TargetFlags & { count: string; follow?: boolean; json?: boolean }) => {
      const { openOps } = await ops();
      const ctx = await openOps(opts(o));
      const print = (e: { at: string; type: string; message: string }) => say(o.json ? JSON.stringify(e) : `${e.at}  ${e.type.padEnd(15)} ${e.message}`);
      try {
        const list = await ctx.events.list(Number(o.count));
        list.forEach(print);
        if (o.follow) {
          const last = list.at(-1)?.seq ?? 0;
          const sub = await ctx.events.watch((e) => void ((e.seq ?? 0) > last && print(e)), { backlog: 0 });
          await new Promise<void>((resolve) => {
            process.once('SIGINT', () => resolve());
            process.once('SIGTERM', () => resolve());
          });
          await sub.close();
        }
      } finally {
        await ctx.close();
      }
    });
}
