import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GRPCDeadlineExceededError, GRPCUnavailableError, EtcdError } from 'etcd3';
import { MEMBER_COOLDOWN_MS, MemberHealth, neverSent } from './call.ts';

/** Runs one call through `host`'s policy; 'passed' when the policy did not call through. */
async function call(h: MemberHealth, host: string, outcome: 'ok' | Error): Promise<'ok' | 'failed' | 'passed'> {
  let through = false;
  try {
    await h.policyFor(host).execute(() => {
      through = true;
      if (outcome !== 'ok') throw outcome;
      return 'ok';
    });
    return 'ok';
  } catch {
    return through ? 'failed' : 'passed';
  }
}

describe('MemberHealth: members that just failed are passed over', () => {
  const clock = () => {
    let t = 0;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  it('passes over a member that failed with no connection or a deadline, while another has not failed', async () => {
    const c = clock();
    const h = new MemberHealth(c.now);
    for (const m of ['a', 'b', 'c']) h.add(m);
    assert.equal(await call(h, 'a', new GRPCUnavailableError('14 UNAVAILABLE: No connection established')), 'failed');
    assert.equal(await call(h, 'a', 'ok'), 'passed');
    assert.equal(await call(h, 'b', 'ok'), 'ok');
    assert.equal(await call(h, 'b', new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED')), 'failed');
    assert.equal(await call(h, 'b', 'ok'), 'passed');
    // c has not failed: a and b stay passed over until their cooldown ends.
    c.advance(MEMBER_COOLDOWN_MS - 1);
    assert.equal(await call(h, 'a', 'ok'), 'passed');
    c.advance(1);
    assert.equal(await call(h, 'a', 'ok'), 'ok');
  });

  it('never passes over every member: with all of them failing (or one member only), each is tried', async () => {
    const c = clock();
    const one = new MemberHealth(c.now);
    one.add('only');
    assert.equal(await call(one, 'only', new GRPCUnavailableError('14 UNAVAILABLE')), 'failed');
    assert.equal(await call(one, 'only', 'ok'), 'ok');
    const two = new MemberHealth(c.now);
    for (const m of ['a', 'b']) two.add(m);
    assert.equal(await call(two, 'a', new GRPCUnavailableError('14 UNAVAILABLE')), 'failed');
    assert.equal(await call(two, 'b', new GRPCUnavailableError('14 UNAVAILABLE')), 'failed');
    assert.equal(await call(two, 'a', 'ok'), 'ok');
  });

  it("an answer that is an error (etcd's own, such as a bad request) does not count against the member", async () => {
    const h = new MemberHealth(clock().now);
    for (const m of ['a', 'b']) h.add(m);
    assert.equal(await call(h, 'a', new EtcdError('etcdserver: requested lease not found')), 'failed');
    assert.equal(await call(h, 'a', 'ok'), 'ok');
  });
});

describe('neverSent', () => {
  it("is gRPC's failure without a connection, nothing else", () => {
    assert.equal(neverSent(new GRPCUnavailableError('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 10.0.0.1:2379')), true);
    assert.equal(neverSent(new GRPCUnavailableError('14 UNAVAILABLE: Connection dropped')), false);
    assert.equal(neverSent(new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED: Deadline exceeded')), false);
    assert.equal(neverSent('No connection established'), false);
  });
});
