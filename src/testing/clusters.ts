/**
 * Test fixtures: clusters built the way the loader builds them (every default from
 * clusterFileSchema, roles from PRESET_ROLES), without reading a file.
 */
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { z } from 'zod';
import { PRESET_ROLES, clusterFileSchema, type Cluster, type Secrets } from '../config/schema.ts';

type Input = z.input<typeof clusterFileSchema>;

export interface FixtureOverrides {
  cluster?: Input['cluster'];
  database?: Input['database'];
  timers?: Input['timers'];
  proxy?: Input['proxy'];
  application?: Input['application'];
  /** Addresses by machine name (others keep the defaults). */
  addresses?: Record<string, string>;
}

/** Default addresses: observer .10, app machines .11/.12, db machines .21/.22. */
export const FIXTURE_ADDRESSES: Record<string, string> = {
  observer: '10.0.0.10',
  app1: '10.0.0.11',
  app2: '10.0.0.12',
  db1: '10.0.0.21',
  db2: '10.0.0.22',
};

/** Addresses on loopback (all of 127/8 is local on Linux), for checks that bind or connect. */
export function loopbackAddresses(base = 60): Record<string, string> {
  return { observer: `127.0.0.${base}`, app1: `127.0.0.${base + 1}`, app2: `127.0.0.${base + 2}`, db1: `127.0.0.${base + 3}`, db2: `127.0.0.${base + 4}` };
}

export function clusterFixture(topology: 'distributed' | 'pair', overrides: FixtureOverrides = {}): Cluster {
  const roles = PRESET_ROLES[topology];
  const addresses = { ...FIXTURE_ADDRESSES, ...overrides.addresses };
  const machines: Input['machines'] = Object.fromEntries(Object.keys(roles).map((name) => [name, { address: addresses[name]! }]));
  const file = clusterFileSchema.parse({
    topology,
    machines,
    ...(overrides.cluster && { cluster: overrides.cluster }),
    ...(overrides.database && { database: overrides.database }),
    ...(overrides.timers && { timers: overrides.timers }),
    ...(overrides.proxy && { proxy: overrides.proxy }),
    ...(overrides.application && { application: overrides.application }),
  } satisfies Input);
  return {
    ...file,
    source: '<generated>',
    machines: Object.entries(file.machines).map(([name, m]) => ({ name, ...m, roles: m.roles ?? roles[name] ?? [] })),
  };
}

/** Secrets with characters that break naive quoting in YAML, properties, SQL and shells. */
export function secretsFixture(): Secrets {
  return {
    postgresPassword: 'pg-Super#secret: "x" 1',
    replicationPassword: '12345678',
    appDbPassword: "app'Pa$$w0rd\\ é=ok",
    patroniRestPassword: 'yes-rest-Secret!',
  };
}

// ---------------------------------------------------------------- helpers for tests that run real tools

export { freePort } from '../util/net.ts';

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program (no shell) and returns its exit code and output; never throws on a failure exit. */
export async function runTool(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ToolResult> {
  return new Promise((resolveRun) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolveRun({ code, stdout: String(stdout), stderr: String(stderr) + (err && code === null ? String(err) : '') });
    });
  });
}

/** A fresh private directory under the OS temp dir; remove it with rm(dir, { recursive: true }). */
export async function tempDir(prefix = 'vigil-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * Rewrites Vigil's on-machine roots in a generated file to a test directory, the way the lab's
 * bind mounts relocate them, so a real tool can check the file without touching /etc or /var.
 */
export function relocate(content: string, root: string): string {
  return content.replace(/(\/etc\/vigil|\/var\/lib\/vigil|\/var\/log\/vigil|\/run\/vigil)(?=[/\s;]|$)/gm, (m) => `${root}${m}`);
}

/** A file's text from its lines (the cluster-file tests: errors name lines, so each line is explicit). */
export const fileOf = (...lines: string[]): string => `${lines.join('\n')}\n`;

/** The smallest `pair` cluster file, a line each; a test appends its own section from line 9. */
export const PAIR_LINES: readonly string[] = [
  'topology: pair', //                1
  'machines:', //                     2
  '  observer:', //                   3
  '    address: 10.0.0.10', //        4
  '  app1:', //                       5
  '    address: 10.0.0.11', //        6
  '  app2:', //                       7
  '    address: 10.0.0.12', //        8
];
