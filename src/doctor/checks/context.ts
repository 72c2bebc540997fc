/** What every check reads: the cluster, the gathered facts and the platform's fixes. Pure data. */
import type { Cluster, Machine } from '../../config/schema.ts';
import type { RenderedFile } from '../../render/file.ts';
import type { Fixes } from '../fixes.ts';
import type { Facts, MachineFacts, PlatformKind } from '../types.ts';

export interface EvalContext {
  cluster: Cluster;
  facts: Facts;
  platform: PlatformKind;
  fixes: Fixes;
  /** The files the renderers generate per machine (owners and modes to expect). */
  rendered: Map<string, RenderedFile[]>;
  now: Date;
}

/** Facts of the machines that answered, by name. */
export function reachable(ctx: EvalContext): Map<string, MachineFacts> {
  return new Map(ctx.facts.machines.filter((m) => m.reachable.ok).map((m) => [m.name, m]));
}

export function machineNamed(ctx: EvalContext, name: string): Machine | undefined {
  return ctx.cluster.machines.find((m) => m.name === name);
}

/** The active app machine from etcd, or why it is not known. */
export function activeNode(ctx: EvalContext): { node: string | null } | { unknown: string } {
  const s = ctx.facts.cluster.state;
  return s.ok ? { node: s.value.active?.node ?? null } : { unknown: `the active machine is not known (${s.error})` };
}

export const fmtBytes = (n: number): string =>
  n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;

export const octal = (mode: number): string => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
