/**
 * `vigil airgap import BUNDLE` from the admin's machine: the cluster half of the air gap.
 *
 *   1. verify the bundle here against the trust file and the cluster's record in etcd (the last
 *      accepted sequence: an older bundle is refused cluster-wide, whichever machine is active)
 *   2. find the active app machine (etcd's active record, as `vigil status` does)
 *   3. back up the application's database on the PostgreSQL primary (./airgap-backup.ts); a failed
 *      backup stops here
 *   4. copy the bundle into a root-only directory on the active machine (files already there
 *      with the same SHA-256 are not sent again, so a second run after a broken copy resumes)
 *   5. import it there with the machine's own `vigil airgap import --target` (src/airgap/import.ts), which
 *      verifies that copy again, never the admin's, with the cluster's record as its floor, and
 *      swaps the patch directory atomically; file sync carries it to the standbys
 *   6. record the new sequence in etcd (compare-and-swap on the record read in 1), then the event
 *
 * A crash anywhere leaves either the old set or the new one on the active machine. If it comes
 * after 5 and before 6, the next run finds the bundle newer than etcd's record: it backs up as for
 * any new import, the machine answers that it holds the bundle already, and the record is written.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Cluster, Machine } from '../config/schema.ts';
import type { VigilStore } from '../etcd/store.ts';
import type { EventLog } from '../events/log.ts';
import { VIGIL_INSTALL } from '../layout/units.ts';
import type { AirgapRecord } from '../model/ha.ts';
import type { RemoteShell } from '../remote/types.ts';
import { ERROR_CODES, VigilError, problem, type ErrorCode } from '../util/errors.ts';
import { MANIFEST, formatBytes } from '../airgap/format.ts';
import { readTrust, writeTrust } from '../airgap/keys.ts';
import { verifyBundle, type Verified } from '../airgap/verify.ts';
import { backupDatabase, backupName, type Backup } from './airgap-backup.ts';

/** Where bundles are copied on the active machine, one directory per bundle id; root only. */
export const INCOMING_DIR = '/var/lib/vigil/airgap/incoming';

export interface ClusterImportOptions {
  cluster: Cluster;
  store: VigilStore;
  events: EventLog;
  openShell(m: Machine): Promise<RemoteShell>;
  bundle: string;
  trustPath: string;
  progress(line: string): void;
  now?: Date;
}

export interface ClusterImportResult {
  /** `already-imported`: the active machine held the bundle and the cluster's record named it. */
  status: 'imported' | 'already-imported';
  /** The machine the bundle was imported on (or found on) now; the record may name an earlier one. */
  node: string;
  /** The record was written by this import (false: it named this bundle already). */
  recorded: boolean;
  record: AirgapRecord;
  backup: Backup | null;
}

const clusterError = (where: string, message: string, fix: string, cause?: unknown) =>
  new VigilError('AIRGAP_CLUSTER', [problem(where, message, fix)], { cause });

const isCode = (c: string): c is ErrorCode => Object.hasOwn(ERROR_CODES, c);

export async function importToCluster(o: ClusterImportOptions): Promise<ClusterImportResult> {
  const patchDir = o.cluster.application.patchDir;
  if (!patchDir)
    throw clusterError(
      'application.patchDir',
      'is not set in the cluster file: the import has no directory to fill',
      "set it to the application's patch directory (also listed in application.syncDirs) and run `vigil apply`",
    );
  const { chain } = await readTrust(o.trustPath);
  const rec = await o.store.getAirgap({ timeoutMs: 5000 });
  const last = rec ? { sequence: rec.record.sequence, manifestSha256: rec.record.manifestSha256, importedAt: rec.record.importedAt } : undefined;
  o.progress(`verifying ${o.bundle} against ${o.trustPath}; the cluster's last import: ${rec ? `sequence ${rec.record.sequence}` : 'none'}`);
  let v: Verified;
  try {
    v = await verifyBundle(o.bundle, { trust: chain, trustSource: o.trustPath, last, now: o.now, progress: o.progress });
  } catch (err) {
    await refused(o, err, null, await claimedSequence(o.bundle));
    throw err;
  }
  const m = v.manifest;
  const seq = { sequence: m.sequence, sequenceVerified: true };
  const active = await o.store.getActive({ timeoutMs: 5000 });
  const node = active ? o.cluster.machines.find((x) => x.name === active.record.node) : undefined;
  if (!node)
    throw clusterError(
      'etcd active record',
      active ? `names ${active.record.node}, which the cluster file does not have` : 'names no active app machine',
      'wait until `vigil status` shows an active app machine, then run the import again',
    );
  let backup: Backup | null = null;
  if (v.status === 'verified') {
    backup = await backupFirst(o, m.sequence, m.bundleId);
  } else {
    o.progress(`bundle sequence ${m.sequence} is the cluster's last import: checking that ${node.name} holds it (no backup: the set is not new)`);
  }
  const shell = await o.openShell(node);
  let out: string;
  try {
    const dir = `${INCOMING_DIR}/${m.bundleId}`;
    await copyBundle(o, shell, dir);
    o.progress(`importing on ${node.name} into ${patchDir} (the copy there is verified again)`);
    const argv = [VIGIL_INSTALL.node, VIGIL_INSTALL.entry, 'airgap', 'import', dir, '--trust', `${dir}.trust.json`, '--target', patchDir];
    if (last) argv.push('--floor', `${last.sequence}:${last.manifestSha256}`);
    const r = await shell.exec(argv, { timeoutMs: 3_600_000 });
    if (r.code !== 0) {
      const code = /error \[([A-Z_]+)\]/.exec(r.stderr)?.[1];
      const message =
        r.stderr
          .replace(/^error \[[A-Z_]+\]\n/m, '')
          .trim()
          .slice(0, 1500) || `exit ${r.code}`;
      const err =
        code && isCode(code)
          ? new VigilError(code, [problem(`${node.name}: ${dir}`, message, 'see the message; nothing changed in the patch directory unless it says so')])
          : clusterError(
              `${node.name}`,
              `\`vigil airgap import\` there failed (exit ${r.code}): ${message}`,
              `read the message, fix the cause and run the import again: it resumes`,
            );
      // A refusal of the copy: drop it. Any other failure keeps it for the next run.
      if (r.code >= 20 && r.code <= 29) await shell.exec(['rm', '-rf', '--', dir, `${dir}.trust.json`]);
      await refused(o, err, node.name, seq);
      throw err;
    }
    out = r.stdout;
    await shell.exec(['rm', '-rf', '--', dir, `${dir}.trust.json`]);
  } finally {
    await shell.close();
  }
  const record: AirgapRecord = {
    sequence: m.sequence,
    bundleId: m.bundleId,
    manifestSha256: v.manifestSha256,
    node: node.name,
    importedAt: (o.now ?? new Date()).toISOString(),
    backup: backup ? { machine: backup.machine, path: backup.path } : (rec?.record.backup ?? null),
  };
  if (v.status === 'verified') {
    if (!(await o.store.casAirgap(record, rec ? { revision: rec.revision } : null, { timeoutMs: 5000 })))
      throw clusterError(
        'etcd airgap/last',
        `changed while this import ran (another import?); ${node.name} holds bundle sequence ${m.sequence}`,
        'run `vigil airgap status`, then this import again: it records the sequence if it is still the newest',
      );
    if (v.newTrust) await writeTrust(o.trustPath, v.newTrust);
  }
  const resumed =
    (/finished an interrupted import first/.test(out) ? ' (it first finished an interrupted import)' : '') +
    (/without its whole set: imported it again/.test(out) ? ' (it held the record of the bundle without its whole set)' : '');
  const already = /nothing to do/.test(out);
  const status = v.status === 'already-imported' && already ? 'already-imported' : 'imported';
  await o.events
    .append({
      type: 'airgap-import',
      node: node.name,
      message:
        status === 'already-imported'
          ? `air-gap bundle sequence ${m.sequence} imported again: ${node.name} already held it`
          : `air-gap bundle sequence ${m.sequence} (${m.files.length} files) imported on ${node.name} into ${patchDir}${resumed}${backup ? `; database backup ${backup.machine}:${backup.path}` : ''}`,
      details: { sequence: m.sequence, bundleId: m.bundleId, manifestSha256: v.manifestSha256, backup, from: hostname() },
    })
    .catch((err: unknown) => o.progress(`warning: the event could not be recorded: ${(err as Error).message}`));
  return { status, node: node.name, recorded: v.status === 'verified', record: v.status === 'verified' ? record : rec!.record, backup };
}

/** The event of a refusal; a failure to record it is only said (the refusal is the error to show). */
async function refused(o: ClusterImportOptions, err: unknown, node: string | null, seq: { sequence: number; sequenceVerified: boolean } | null): Promise<void> {
  const code = (err as { code?: string }).code ?? 'error';
  const first = (err as Error).message.split('\n')[0] ?? '';
  const what = seq ? `air-gap bundle sequence ${seq.sequence}${seq.sequenceVerified ? '' : ' (unverified)'} at ${o.bundle}` : `air-gap bundle ${o.bundle}`;
  await o.events
    .append({
      type: 'airgap-refused',
      ...(node ? { node } : {}),
      message: `${what} refused${node ? ` on ${node}` : ''} [${code}]: ${first}`.slice(0, 500),
      details: { code, bundle: o.bundle, ...(seq ?? {}), from: hostname(), error: (err as Error).message.slice(0, 1500) },
    })
    .catch((e: unknown) => o.progress(`warning: the refusal could not be recorded as an event: ${(e as Error).message}`));
}

/**
 * The sequence a refused bundle's manifest claims, for the event and its alert only (it was not
 * verified: the refusal may be of that very manifest); null when there is none to read.
 */
async function claimedSequence(bundle: string): Promise<{ sequence: number; sequenceVerified: false } | null> {
  try {
    const m = JSON.parse(await readFile(join(bundle, MANIFEST), 'utf8')) as { sequence?: unknown };
    return typeof m.sequence === 'number' && Number.isSafeInteger(m.sequence) && m.sequence >= 0 ? { sequence: m.sequence, sequenceVerified: false } : null;
  } catch {
    return null;
  }
}

/** The PostgreSQL primary (the member holding Patroni's leader key in etcd), then its dump. */
async function backupFirst(o: ClusterImportOptions, sequence: number, bundleId: string): Promise<Backup> {
  const view = await o.store.readPatroniLeader(o.cluster.cluster.name, 5000);
  const primary = o.cluster.machines.find((m) => m.name === view.leader && m.roles.includes('db'));
  if (!primary)
    throw new VigilError('AIRGAP_BACKUP', [
      problem(
        "Patroni's leader key in etcd",
        `${view.leader ? `names ${view.leader}, not a db machine of the cluster file` : 'names no primary'}: the database cannot be backed up, so nothing was imported`,
        'check `vigil status` (the database column) and run the import again once a primary serves',
      ),
    ]);
  const shell = await o.openShell(primary);
  try {
    o.progress(`backing up database ${o.cluster.database.appDatabase} on ${primary.name} (the primary) with pg_dump`);
    const b = await backupDatabase(o.cluster, primary, shell, backupName(sequence, bundleId, o.now ?? new Date()));
    o.progress(`backup written: ${b.machine}:${b.path} (${formatBytes(b.bytes)}), checked with pg_restore --list`);
    return b;
  } finally {
    await shell.close();
  }
}

/** Per path, the SHA-256 of the file there, or '-' when there is none. Paths are arguments, never content. */
const SHA_SCRIPT = 'for p in "$@"; do if [ -f "$p" ]; then s=$(sha256sum < "$p"); echo "${s%% *}"; else echo -; fi; done';

/** Copies the bundle's files into `dir` on the machine, skipping those already there with the same SHA-256. */
async function copyBundle(o: ClusterImportOptions, shell: RemoteShell, dir: string): Promise<void> {
  const names = (await readdir(o.bundle)).sort();
  const mk = await shell.exec(['sh', '-c', 'umask 077 && mkdir -p "$1" && chmod 700 "$1" "$(dirname "$1")"', 'vigil-airgap-incoming', dir]);
  if (mk.code !== 0)
    throw clusterError(`${shell.machine}: ${dir}`, `cannot be created: ${mk.stderr.trim()}`, `check the disk of ${shell.machine} (\`df -h /var/lib/vigil\`)`);
  const states = await shell.exec(['sh', '-c', SHA_SCRIPT, 'vigil-airgap-sha', ...names.map((n) => `${dir}/${n}`)], { timeoutMs: 600_000 });
  const there = states.stdout.split('\n').filter((l) => l !== '');
  let sent = 0;
  for (const [i, name] of names.entries()) {
    const bytes = await readFile(join(o.bundle, name));
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (states.code === 0 && there[i] === sha) continue;
    o.progress(`copying ${name} (${formatBytes(bytes.length)}) to ${shell.machine} [${i + 1}/${names.length}]`);
    await shell.writeFile(`${dir}/${name}`, bytes, { mode: 0o600, owner: 'root:root' });
    sent += bytes.length;
  }
  await shell.writeFile(`${dir}.trust.json`, await readFile(o.trustPath), { mode: 0o600, owner: 'root:root' });
  o.progress(`copied ${formatBytes(sent)} to ${shell.machine}:${dir}${sent === 0 ? ' (everything was there already)' : ''}`);
}
