/**
 * The local half of `vigil airgap import`: a verified bundle becomes the content of a target
 * directory (the application's patch directory), old set or new set, never a mix.
 *
 *   1. verify while copying into a staging directory beside the target (same filesystem), the
 *      bytes written being the bytes hashed; the state (sequence, bundle id, manifest and its
 *      signature) goes into the staging directory's .vigil-airgap/
 *   2. write a journal naming the staged bundle
 *   3. exchange the staging directory and the target in one step (renameat2 RENAME_EXCHANGE,
 *      src/util/exchange.ts): the target is the old set, then the new one, never absent, never a mix
 *      (a first import, with no target yet, renames the staging directory to it)
 *   4. rename the old set, now under the staging name, to .NAME.airgap-previous (the one set kept
 *      for a manual roll-back)
 *   5. remove the journal
 *
 * The same bundle again is a no-op only if the target still holds its set (check.ts); otherwise
 * it is imported again, so a directory that got the record without the whole set is mended.
 *
 * A refusal at 1 removes the staging directory: nothing changed. A crash after 2 is finished by
 * the next import, which first reads the journal: the staging directory still holds the journal's
 * bundle (no exchange yet: do it), or the target does (exchanged: only step 4 is left). Two
 * imports at once are kept apart by a lock file.
 */
import { lstat, mkdir, open, readFile, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VigilError, problem } from '../util/errors.ts';
import { exchangeDirs } from '../util/exchange.ts';
import { PatchDirChecker, describePatchDir } from './check.ts';
import { MANIFEST, SIGNATURE, STATE_DIR } from './format.ts';
import { writeTrust, type TrustChain } from './keys.ts';
import { verifyBundle, type FileSink, type LastImport, type Verified } from './verify.ts';

export interface ImportState {
  sequence: number;
  bundleId: string;
  manifestSha256: string;
  keyId: string;
  importedAt: string;
}

export type ImportStep = 'staged' | 'journal' | 'exchanged';

export interface ImportOptions {
  bundle: string;
  target: string;
  trust: TrustChain;
  trustPath: string;
  now?: Date;
  progress?: (line: string) => void;
  /**
   * The cluster's record (etcd, src/airgap/cluster.ts), which outranks the directory's own: a
   * machine whose directory missed an import (down, rebuilt, restored) still refuses what the
   * cluster refused. A bundle with the record's sequence is taken only if it is that same bundle.
   */
  floor?: LastImport;
  /** Names that are not part of the set (file sync's partial-transfer directory): see check.ts. */
  skip?: string[];
  /** Tests only: stop with an error right after this step, as a crash would. */
  crashAfter?: ImportStep;
}

export interface ImportResult {
  status: 'imported' | 'already-imported';
  state: ImportState;
  /** The import finished an earlier, interrupted one first. */
  resumed: boolean;
  /** The directory held this bundle's record but not its set, which was put in place again. */
  repaired?: boolean;
}

const paths = (target: string) => {
  const dir = dirname(target);
  const name = basename(target);
  return {
    staging: join(dir, `.${name}.airgap-staging`),
    previous: join(dir, `.${name}.airgap-previous`),
    journal: join(dir, `.${name}.airgap-journal.json`),
    lock: join(dir, `.${name}.airgap-lock`),
  };
};

const exists = async (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );

/** The state an import left in a directory, or null. */
export async function readState(dir: string): Promise<ImportState | null> {
  try {
    return JSON.parse(await readFile(join(dir, STATE_DIR, 'state.json'), 'utf8')) as ImportState;
  } catch {
    return null;
  }
}

async function writeDurable(path: string, text: string): Promise<void> {
  const fh = await open(path, 'w', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const importError = (where: string, message: string, err?: unknown) =>
  new VigilError('AIRGAP_IMPORT', [problem(where, message, 'fix the cause and run the import again: it resumes')], { cause: err });

async function withLock<T>(lock: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(lock, 'wx', 0o644);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0)
        throw importError(lock, `is held: another import runs (${(err as Error).message})`, err);
      const pid = Number(await readFile(lock, 'utf8').catch(() => ''));
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = Number.isInteger(pid) && pid > 0;
      } catch {
        alive = false;
      }
      if (alive) throw importError(lock, `is held by process ${pid}: another import runs`);
      await rm(lock, { force: true }); // left by a process that died
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

/** Step 4: the old set, under the staging name after the exchange, becomes the one previous set kept. */
async function keepPrevious(target: string): Promise<void> {
  const p = paths(target);
  await rm(p.previous, { recursive: true, force: true });
  await rename(p.staging, p.previous);
  await syncDir(dirname(target));
}

/** Step 3 (and 4): the staged set becomes the target in one step. */
async function putInPlace(target: string, crashAfter?: ImportStep): Promise<void> {
  const p = paths(target);
  if (await exists(target)) {
    exchangeDirs(p.staging, target);
    await syncDir(dirname(target));
    if (crashAfter === 'exchanged') throw new Error('crash after exchanged (test)');
    await keepPrevious(target);
  } else {
    await rename(p.staging, target);
    await syncDir(dirname(target));
  }
}

/** Finishes an import a crash interrupted after its journal was written; removes a stale staging directory. */
async function recover(target: string): Promise<boolean> {
  const p = paths(target);
  let journal: ImportState | null = null;
  try {
    journal = JSON.parse(await readFile(p.journal, 'utf8')) as ImportState;
  } catch {
    journal = null;
  }
  if (!journal) {
    await rm(p.staging, { recursive: true, force: true }); // never complete: the old set stands
    return false;
  }
  const staged = await readState(p.staging);
  if (staged?.bundleId === journal.bundleId) await putInPlace(target);
  else if ((await readState(target))?.bundleId === journal.bundleId && (await exists(p.staging))) await keepPrevious(target);
  await rm(p.journal, { force: true });
  return true;
}

export async function importBundle(o: ImportOptions): Promise<ImportResult> {
  const p = paths(o.target);
  await mkdir(dirname(o.target), { recursive: true });
  return withLock(p.lock, async () => {
    const resumed = await recover(o.target);
    const current = await readState(o.target);
    const own: LastImport | undefined = current
      ? { sequence: current.sequence, manifestSha256: current.manifestSha256, importedAt: current.importedAt }
      : undefined;
    // Behind the cluster: judged against the cluster's record; its own bundle is then imported here, not skipped.
    const behind = o.floor !== undefined && (own === undefined || own.sequence < o.floor.sequence);
    const last: LastImport | undefined = behind ? o.floor : own;
    await mkdir(p.staging);
    let verified: Verified;
    let repaired = false;
    try {
      const sink: FileSink = {
        async open(path) {
          // A write error here (a full disk) is the target's, not the bundle's.
          const full = join(p.staging, path);
          const fail = (err: unknown) => importError(p.staging, `cannot write ${path} (${(err as Error).message})`, err);
          const fh = await mkdir(dirname(full), { recursive: true })
            .then(() => open(full, 'wx', 0o644))
            .catch((err: unknown) => Promise.reject(fail(err)));
          return {
            write: (b) =>
              fh.write(b).then(
                () => undefined,
                (err: unknown) => Promise.reject(fail(err)),
              ),
            close: () =>
              fh
                .sync()
                .then(() => fh.close())
                .catch((err: unknown) => Promise.reject(fail(err))),
          };
        },
      };
      const verify = (l: LastImport | undefined) =>
        verifyBundle(o.bundle, { trust: o.trust, trustSource: o.trustPath, last: l, now: o.now, sink, progress: o.progress });
      verified = await verify(last);
      if (behind && verified.status === 'already-imported') verified = await verify({ sequence: o.floor!.sequence - 1, importedAt: o.floor!.importedAt });
      if (verified.status === 'already-imported') {
        // The directory's record names this bundle, but is the content that set? A record can
        // arrive without the set: a standby's copy cut off by a failover, a file changed by hand.
        const held = await new PatchDirChecker(o.target, o.skip ?? []).check();
        if (!held.matches) {
          o.progress?.(`${o.target} holds the record of bundle sequence ${held.sequence} but not its content (${describePatchDir(held)}): importing it again`);
          verified = await verify({ sequence: verified.manifest.sequence - 1, importedAt: last?.importedAt });
          repaired = true;
        }
      }
    } catch (err) {
      await rm(p.staging, { recursive: true, force: true });
      throw err;
    }
    if (verified.status === 'already-imported') {
      await rm(p.staging, { recursive: true, force: true });
      return { status: 'already-imported', state: current!, resumed };
    }
    const state: ImportState = {
      sequence: verified.manifest.sequence,
      bundleId: verified.manifest.bundleId,
      manifestSha256: verified.manifestSha256,
      keyId: verified.keyId,
      importedAt: (o.now ?? new Date()).toISOString(),
    };
    try {
      await mkdir(join(p.staging, STATE_DIR));
      await writeDurable(join(p.staging, STATE_DIR, MANIFEST), verified.manifestText);
      await writeDurable(join(p.staging, STATE_DIR, SIGNATURE), verified.signatureText);
      await writeDurable(join(p.staging, STATE_DIR, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
      await syncDir(p.staging);
      if (o.crashAfter === 'staged') throw new Error('crash after staged (test)');
      await writeDurable(`${p.journal}.tmp`, JSON.stringify(state));
      await rename(`${p.journal}.tmp`, p.journal);
      await syncDir(dirname(o.target));
      if (o.crashAfter === 'journal') throw new Error('crash after journal (test)');
      await putInPlace(o.target, o.crashAfter);
      await unlink(p.journal);
    } catch (err) {
      if (o.crashAfter) throw err; // a simulated crash leaves everything as a real one would
      throw importError(o.target, `could not be replaced by the verified set (${(err as Error).message})`, err);
    }
    // The trust moves only once the bundle its new key signed is in place.
    if (verified.newTrust) await writeTrust(o.trustPath, verified.newTrust);
    return { status: 'imported', state, resumed, repaired };
  });
}
