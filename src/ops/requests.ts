/**
 * Operator requests (switchover, failover) go through etcd to the observer that leads, so only one
 * actor ever moves the application; this waits for its answer. Maintenance is a flag the observer
 * reads; setting it needs no observer.
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { ActiveRecord, OperatorRequest, VigilEvent } from '../model/ha.ts';
import { VigilError, problem } from '../util/errors.ts';
import { sleep } from '../util/exec.ts';
import type { OpsContext } from './context.ts';

export type Progress = (line: string) => void;

/** A request as the operator makes it; the id and time are added when it is sent. */
type WithoutStamp<R> = R extends unknown ? Omit<R, 'id' | 'at'> : never;
export type NewRequest = WithoutStamp<OperatorRequest>;

export async function sendRequest(ctx: OpsContext, req: NewRequest, say: Progress, timeoutMs = 90_000): Promise<ActiveRecord> {
  const { cluster, store } = ctx;
  const apps = cluster.machines.filter((m) => m.roles.includes('app')).map((m) => m.name);
  if (req.to !== undefined && !apps.includes(req.to))
    throw new VigilError('USAGE', [problem(`--to ${req.to}`, 'not an app machine of this cluster', `use one of ${apps.join(', ')}`)]);
  if (!(await store.currentLeader()))
    throw new VigilError('REQUEST_FAILED', [
      problem(
        cluster.source,
        'no observer is running: nobody would carry the request out',
        'start the observer (`systemctl start vigil-observer` on the observer machine)',
      ),
    ]);
  const id = randomUUID().slice(0, 8);
  const full: OperatorRequest = { ...req, id, at: new Date().toISOString() };
  const seqBefore = (await ctx.events.list(1)).at(-1)?.seq ?? 0;
  if (!(await store.putRequest(full))) {
    const pending = await store.getRequest();
    throw new VigilError('REQUEST_FAILED', [
      problem(
        'request',
        `another request is pending (${pending?.kind} ${pending?.id} since ${pending?.at})`,
        'wait for it to finish (`vigil events --follow`), then try again',
      ),
    ]);
  }
  say(`${req.kind} requested (id ${id})${req.to ? ` to ${req.to}` : ''}; waiting for the observer`);
  const deadline = performance.now() + timeoutMs;
  while ((await store.getRequest())?.id === id) {
    if (performance.now() > deadline) {
      await store.clearRequest(id);
      throw new VigilError(
        'REQUEST_TIMEOUT',
        [
          problem(
            'request',
            `the observer did not finish ${req.kind} ${id} within ${timeoutMs / 1000} s; it was withdrawn`,
            'look at `vigil status` and `vigil events`, then try again',
          ),
        ],
        { retryable: true },
      );
    }
    await sleep(200);
  }
  const events = (await ctx.events.list(50)).filter((e) => (e.seq ?? 0) > seqBefore);
  for (const e of events) say(`  ${e.at}  ${e.type}: ${e.message}`);
  const answer = await answerOf(ctx, req.kind, id, events);
  if (answer?.ok === false) throw new VigilError('REQUEST_FAILED', [problem(req.kind, answer.message, 'see `vigil status` for the state of each machine')]);
  if (answer) say(`observer: ${answer.message}`);
  const active = (await store.getActive())?.record;
  if (!active) throw new VigilError('REQUEST_FAILED', [problem(req.kind, 'no active node after the request', 'see `vigil status`')]);
  return active;
}

/**
 * The observer's answer to request `id`: its answer in etcd or, from an observer older than the
 * answer key, only a refusal, as the `request-failed` event records it. A refusal reads as that
 * event does: `<kind> request <id> refused: <why>`.
 */
async function answerOf(ctx: OpsContext, kind: string, id: string, events: VigilEvent[]): Promise<{ ok: boolean; message: string } | null> {
  const answer = await ctx.store.getRequestAnswer();
  if (answer?.id === id) return { ok: answer.ok, message: answer.ok ? answer.message : `${kind} request ${id} refused: ${answer.message}` };
  const failed = events.find((e) => e.type === 'request-failed' && (e.details?.request as { id?: string } | undefined)?.id === id);
  return failed ? { ok: false, message: failed.message } : null;
}

export async function setMaintenance(ctx: OpsContext, on: boolean, reason: string): Promise<boolean> {
  if (!on) return ctx.store.clearMaintenance();
  const was = await ctx.store.getMaintenance();
  await ctx.store.setMaintenance({ since: was?.since ?? new Date().toISOString(), by: `${userInfo().username}@${hostname()}`, reason });
  return was === null;
}
