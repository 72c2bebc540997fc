import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Background } from './background.ts';

/** A Background on a hand-driven clock, with a run that records its epochs and can be fenced or held. */
function harness(opts: { fencedBelow?: number } = {}) {
  let now = 0;
  const ran: number[] = [];
  const logs: Record<string, unknown>[] = [];
  let hold: Promise<void> | null = null;
  const bg = new Background({
    node: 'app1',
    now: () => now,
    log: (e) => logs.push(e),
    intervalMs: 3_600_000, // ticks are driven by hand
    run: async (_node, epoch) => {
      if (hold) await hold;
      if (epoch < (opts.fencedBelow ?? 0)) return false;
      ran.push(epoch);
      return true;
    },
  });
  bg.start();
  return {
    bg,
    ran,
    logs,
    advance: (ms: number) => (now += ms),
    holdRuns: () => {
      let release!: () => void;
      hold = new Promise<void>((r) => (release = r));
      return () => {
        hold = null;
        release();
      };
    },
  };
}

describe('the reference application background work', () => {
  it('starts inactive and runs only once activated', async () => {
    const h = harness();
    await h.bg.tick();
    assert.deepEqual(h.ran, []);
    h.bg.activate(3, 3000);
    await h.bg.tick();
    await h.bg.tick();
    assert.deepEqual(h.ran, [3, 3]);
    await h.bg.stop();
  });

  it('stops by itself when the grant is not renewed in time (agent hung or gone)', async () => {
    const h = harness();
    h.bg.activate(3, 3000);
    h.advance(2999);
    await h.bg.tick();
    h.advance(1);
    await h.bg.tick();
    assert.deepEqual(h.ran, [3]);
    assert.equal(h.bg.state().active, false);
    h.bg.activate(3, 3000); // renewed: runs again
    await h.bg.tick();
    assert.deepEqual(h.ran, [3, 3]);
    await h.bg.stop();
  });

  it('answers a deactivation only once the run in flight has ended', async () => {
    const h = harness();
    h.bg.activate(3, 3000);
    const release = h.holdRuns();
    const running = h.bg.tick();
    let answered = false;
    const off = h.bg.deactivate().then(() => (answered = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(answered, false, 'not answered while a run is in flight');
    release();
    await Promise.all([running, off]);
    assert.equal(answered, true);
    await h.bg.tick();
    assert.deepEqual(h.ran, [3], 'no run after the deactivation');
    await h.bg.stop();
  });

  it('a run the database fenced (a newer epoch ran) turns the job off until a newer activation', async () => {
    const h = harness({ fencedBelow: 5 });
    h.bg.activate(4, 3000);
    await h.bg.tick();
    assert.equal(h.bg.state().active, false);
    assert.ok(h.logs.some((l) => l['event'] === 'sla-fenced' && l['epoch'] === 4));
    h.bg.activate(4, 3000); // the same stale epoch again: still off
    assert.equal(h.bg.state().active, false);
    h.bg.activate(5, 3000);
    await h.bg.tick();
    assert.deepEqual(h.ran, [5]);
    await h.bg.stop();
  });
});
