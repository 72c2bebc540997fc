/**
 * Can doctor run commands on every machine, and can each machine reach the ports it needs on the
 * others (portRequirements)? A port nobody listens on is reported once, on the machine that
 * should listen, with the component to start; a port that listens but is not reachable from some
 * machines is a firewall, reported with the machines cut off and the rule to add.
 */
import { listensOn, isLoopback } from '../../facts/parse.ts';
import { portRequirements, type Component, type PortRequirement } from '../expect.ts';
import type { Results } from '../results.ts';
import type { PortProbe } from '../types.ts';
import { activeNode, machineNamed, reachable, type EvalContext } from './context.ts';

export function checkReachable(ctx: EvalContext, r: Results): void {
  for (const f of ctx.facts.machines) {
    if (f.reachable.ok) {
      r.ran('reachable', f.name);
      continue;
    }
    if (f.gathered === false) {
      r.skip('reachable', f.name, f.reachable.error);
      continue;
    }
    const m = machineNamed(ctx, f.name)!;
    r.fail(
      'reachable',
      f.name,
      `doctor cannot run commands on ${f.name} (${f.reachable.error})`,
      'none of its other checks could run; if the cluster cannot reach it either, its roles are missing from the cluster',
      ctx.fixes.unreachable(m),
    );
  }
}

const WHY: Record<Component, string> = {
  etcd: 'Patroni, the agents and the observers keep their leases in etcd: a machine that cannot reach it demotes its database or stops its application',
  patroni: "replication, pg_rewind after a failover and HAProxy's routing to the primary all need it",
  haproxy: 'users and the application reach the cluster only through HAProxy',
  agent: 'HAProxy sends traffic only to the app machine whose agent passes its role check, and the observer fences and activates machines through it',
  nginx: "the observer's deep check and HAProxy's traffic reach the application through nginx on the active machine",
  sshd: "file sync pushes the application's files to the standbys over SSH; a standby that misses them serves an incomplete set after a failover",
};

const OUTCOME: Record<PortProbe['outcome'], string> = {
  open: 'open',
  timeout: 'connections time out: a firewall drops them',
  refused: 'connections are refused: a firewall rejects them, or the service listens on another address',
  unreachable: 'no route to the machine',
  error: 'the connection attempt failed',
};

function probeOf(ctx: EvalContext, source: string | null, req: PortRequirement): PortProbe | undefined {
  const list = source === null ? ctx.facts.cluster.adminPorts : ctx.facts.machines.find((m) => m.name === source)?.ports;
  return list?.find((p) => p.to === req.to && p.port === req.port);
}

export function checkPorts(ctx: EvalContext, r: Results): void {
  const up = reachable(ctx);
  const active = activeNode(ctx);
  for (const f of up.values()) r.ran('ports', f.name);
  for (const req of portRequirements(ctx.cluster)) {
    const target = up.get(req.to);
    const where = `TCP port ${req.port} (${req.what})`;
    if (!target) continue; // reported as unreachable
    if (req.activeOnly) {
      if ('unknown' in active) {
        r.skip('ports', req.to, `${where}: ${active.unknown}`);
        continue;
      }
      if (active.node !== req.to) continue; // a standby must not listen there: the services check says so
    }
    const listeners = target.listeners?.ok ? target.listeners.value.filter((l) => l.port === req.port) : undefined;
    if (listeners && listeners.length === 0) {
      r.fail('ports', req.to, `nothing listens on ${where} on ${req.to}`, WHY[req.component], ctx.fixes.start(req.to, req.component));
      continue;
    }
    if (listeners && !listeners.some((l) => listensOn(l, target.address)) && listeners.every(isLoopback)) {
      r.fail(
        'ports',
        req.to,
        `${where} listens on ${listeners.map((l) => l.address).join(', ')} only: the other machines cannot reach it`,
        WHY[req.component],
        ctx.fixes.reinstall(req.to, `the ${req.component} configuration`),
      );
      continue;
    }
    const failing = req.from
      .filter((s) => s === null || up.has(s))
      .map((s) => ({ source: s, probe: probeOf(ctx, s, req) }))
      .filter((x) => x.probe !== undefined && x.probe.outcome !== 'open');
    if (failing.length === 0) continue;
    const names = failing.map((x) => x.source ?? 'this shell (doctor)');
    const outcomes = [...new Set(failing.map((x) => OUTCOME[x.probe!.outcome] + (x.probe!.detail ? ` (${x.probe!.detail})` : '')))];
    const addresses = failing.map((x) => (x.source === null ? "this shell's address" : machineNamed(ctx, x.source)!.address));
    const firewall = target.systemd?.firewall.ok ? target.systemd.firewall.value : null;
    r.fail(
      'ports',
      req.to,
      `${where} on ${req.to} is not reachable from ${names.join(', ')}: ${outcomes.join('; ')}`,
      WHY[req.component],
      ctx.fixes.openPort(req.to, req.port, addresses, firewall),
    );
  }
}
