import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ActiveRecord, OperatorRequest, RequestAnswer, VigilEvent } from '../model/ha.ts';
import type { OpsContext } from './context.ts';
import { sendRequest } from './requests.ts';

/**
 * An observer that answers at once: the request is gone on the first look, with `answer` stored
 * (null: an observer older than the answer key) and `events` recorded.
 */
function ctxAnswering(answer: (id: string) => RequestAnswer | null, events: (id: string) => VigilEvent[] = () => []): OpsContext {
  let sent: OperatorRequest | null = null;
  const active: ActiveRecord = { node: 'app2', epoch: 5, since: '2026-01-01T00:00:00Z', reason: 'test' };
  const store = {
    currentLeader: async () => ({ id: 'obs-1', host: 'obs', since: '' }),
    putRequest: async (r: OperatorRequest) => ((sent = r), true),
    getRequest: async () => null,
    getRequestAnswer: async () => (sent ? answer(sent.id) : null),
    getActive: async () => ({ record: active, revision: '1' }),
  };
  const log = { list: async () => (sent ? events(sent.id).map((e, i) => ({ ...e, seq: i + 1 })) : []) };
  const cluster = {
    machines: [
      { name: 'app1', roles: ['app'] },
      { name: 'app2', roles: ['app'] },
    ],
    source: 'vigil.yaml',
  };
  return { cluster, store, events: log } as unknown as OpsContext;
}

describe("sendRequest: the observer's answer", () => {
  it('ok: its message is shown', async () => {
    const lines: string[] = [];
    const ctx = ctxAnswering((id) => ({ id, ok: true, message: 'app2 is already active at epoch 5', at: '' }));
    const active = await sendRequest(ctx, { kind: 'failover', to: 'app2' }, (l) => lines.push(l));
    assert.equal(active.node, 'app2');
    assert.ok(lines.includes('observer: app2 is already active at epoch 5'), lines.join('\n'));
  });

  it('refused: REQUEST_FAILED with its reason, worded as the request-failed event', async () => {
    const ctx = ctxAnswering((id) => ({ id, ok: false, message: 'app2 is not ready (agent unreachable); app1 stays active', at: '' }));
    await assert.rejects(
      sendRequest(ctx, { kind: 'failover', to: 'app2' }, () => {}),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'REQUEST_FAILED');
        assert.match(err.message, /failover request \w+ refused: app2 is not ready \(agent unreachable\); app1 stays active/);
        return true;
      },
    );
  });

  it("an answer to another request is not this one's; without its own, the request-failed event says it was refused", async () => {
    const refused = (id: string): VigilEvent[] => [
      { at: '', type: 'request-failed', message: `switchover request ${id} refused: no standby is healthy`, details: { request: { id } } },
    ];
    const ctx = ctxAnswering(() => ({ id: 'other', ok: true, message: 'not this one', at: '' }), refused);
    await assert.rejects(
      sendRequest(ctx, { kind: 'switchover' }, () => {}),
      /switchover request \w+ refused: no standby is healthy/,
    );
    const lines: string[] = [];
    await sendRequest(
      ctxAnswering(() => null),
      { kind: 'switchover' },
      (l) => lines.push(l),
    );
    assert.ok(!lines.some((l) => l.startsWith('observer:')), lines.join('\n'));
  });
});
