/**
 * What an operator command needs to reach a cluster from the admin's shell: the cluster file,
 * etcd, and the admin's certificate for etcd (which asks every client for one) and the agents' APIs (kept in `pki/` beside the cluster
 * file: ca.pem, admin.pem, admin.key), or another place's (`target`: the running lab's, which a
 * checkout's `vigil --lab` names through src/cli/checkout.ts).
 */
import { dirname, join } from 'node:path';
import { loadCluster } from '../config/load.ts';
import type { Cluster } from '../config/schema.ts';
import { openStore, storeTls, type VigilStore } from '../etcd/store.ts';
import { EventLog } from '../events/log.ts';
import { loadPki, type LoadedPki } from '../pki/ca.ts';
import { etcdEndpoints } from '../layout/network.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface OpsOptions {
  /** The cluster file; its pki/ directory holds the admin's certificate. */
  config?: string;
  /** A cluster file and certificate directory kept elsewhere (the lab's: src/lab/target.ts); wins over `config`. */
  target?: { clusterFile: string; pkiDir: string };
}

export interface OpsContext {
  cluster: Cluster;
  store: VigilStore;
  events: EventLog;
  pkiDir: string;
  /** The admin's identity (loaded when the context opens: etcd needs it too). */
  admin(): Promise<LoadedPki>;
  close(): Promise<void>;
}

export async function openOps(o: OpsOptions): Promise<OpsContext> {
  const file = o.target?.clusterFile ?? o.config ?? 'vigil.yaml';
  const cluster = await loadCluster(file);
  const pkiDir = o.target?.pkiDir ?? join(dirname(file), 'pki');
  // etcd takes clients with a certificate from the cluster CA only: the admin's, checked first so
  // a missing or unreadable file is named (TLS_BUNDLE with its path and fix), not a timeout.
  const admin = loadPki(pkiDir, 'admin');
  const tls = storeTls(await admin);
  let store: VigilStore;
  try {
    store = await openStore({ endpoints: etcdEndpoints(cluster), cluster: cluster.cluster.name, dialTimeoutMs: 5000, tls });
  } catch (err) {
    throw new VigilError(
      'CLUSTER_UNREACHABLE',
      [
        problem(
          etcdEndpoints(cluster).join(', '),
          `etcd does not answer: ${(err as Error).message}`,
          'check that the etcd machines are up and reachable from here on port 2379 (`vigil doctor` lists what is wrong)',
        ),
      ],
      { cause: err, retryable: true },
    );
  }
  return {
    cluster,
    store,
    events: new EventLog(store.events, { file: null }),
    pkiDir,
    admin: () => admin,
    close: () => store.close(),
  };
}

/** Runs `fn` with an open context and always closes it. */
export async function withOps<T>(o: OpsOptions, fn: (ctx: OpsContext) => Promise<T>): Promise<T> {
  const ctx = await openOps(o);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}
