/**
 * `vigil-sync-receive --peer <machine>`: the SSH forced command of the sync key of <machine>, run
 * on a standby for each push. It checks the push against the agent's accept file (decidePush),
 * runs rsync's receiving side, keeps watching the accept file during the transfer and stops rsync
 * at once if the active record moves away from the pusher. Files the push would delete or
 * overwrite go to quarantine until a full reconciliation from the pusher's epoch has completed.
 *
 * A whole-set push (the air-gap patch directory, `--delay-updates`) never writes into the
 * directory: rsync builds the set in a staging directory beside it (the live one as --link-dest),
 * and only after rsync succeeded, still accepted, are the two exchanged in one renameat2
 * (src/util/exchange.ts). A push cut off at any point leaves the directory as it was.
 *
 * Bundled into one small file (src/sync/bundle.ts) and run with plain node: it starts for every
 * batch of changes, so it imports nothing beyond node's own modules, protocol.ts and
 * util/boot-clock.ts.
 */
import { spawn } from 'node:child_process';
import {
  chownSync,
  closeSync,
  existsSync,
  openSync,
  readSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { bootClockMs } from '../util/boot-clock.ts';
import { exchangeDirs } from '../util/exchange.ts';
import {
  PARTIAL_DIR,
  REFUSED_EXIT,
  REFUSED_PREFIX,
  SYNC_PATHS,
  decidePush,
  needsQuarantine,
  quarantineDir,
  serverArgv,
  stillAccepted,
  wholeServerArgv,
  wholeStaging,
  type AcceptState,
  type Sources,
} from './protocol.ts';

/** How long rsync has to stop after SIGTERM before its process group is killed. */
const KILL_AFTER_MS = 1000;

export interface ReceiveOptions {
  peer: string;
  command: string | undefined;
  acceptFile?: string;
  receiversDir?: string;
  quarantineRoot?: string;
  sourcesFile?: string;
  /** How often the accept file is read again during a transfer (default 100 ms). */
  recheckMs?: number;
}

/** Whether two files hold the same bytes (read in 1 MiB pieces). */
function sameContent(a: string, b: string): boolean {
  const [fa, fb] = [openSync(a, 'r'), openSync(b, 'r')];
  try {
    const [ba, bb] = [Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)];
    for (;;) {
      const [na, nb] = [readSync(fa, ba), readSync(fb, bb)];
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/**
 * After a whole-set exchange, `old` holds the set the directory held before. With quarantine on
 * (the first reconciliation from this pusher's epoch), every file of it that the new set does not
 * hold as the same file (a hard link from --link-dest, or the same bytes) is moved into the quarantine, as
 * rsync's --backup does for the other pushes; then `old` is removed.
 */
function retire(old: string, live: string, quarantine: string | null): void {
  if (quarantine) {
    const walk = (rel: string) => {
      for (const e of readdirSync(join(old, rel), { withFileTypes: true })) {
        const r = rel ? join(rel, e.name) : e.name;
        if (e.name === PARTIAL_DIR) continue; // partial transfers, not files of the set
        if (e.isDirectory()) {
          walk(r);
          continue;
        }
        const kept = (() => {
          try {
            const [n, o] = [lstatSync(join(live, r)), lstatSync(join(old, r))];
            return n.ino === o.ino || (n.isFile() && n.size === o.size && sameContent(join(live, r), join(old, r)));
          } catch {
            return false;
          }
        })();
        if (kept) continue;
        mkdirSync(dirname(join(quarantine, r)), { recursive: true });
        renameSync(join(old, r), join(quarantine, r));
      }
    };
    walk('');
  }
  rmSync(old, { recursive: true, force: true });
}

function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Removes the directories of a quarantine path that stayed empty, up to (not including) `root`. */
function pruneEmpty(path: string, root: string): void {
  let top = path;
  while (dirname(top) !== root && dirname(top) !== top) top = dirname(top);
  const walk = (p: string): boolean => {
    let empty = true;
    for (const e of readdirSync(p, { withFileTypes: true })) {
      if (e.isDirectory() && walk(join(p, e.name))) continue;
      empty = false;
    }
    if (empty) rmdirSync(p);
    return empty;
  };
  try {
    if (statSync(top).isDirectory()) walk(top);
  } catch {
    // rsync made nothing there: nothing to prune
  }
}

export async function receive(o: ReceiveOptions): Promise<number> {
  const acceptFile = o.acceptFile ?? SYNC_PATHS.acceptFile;
  const receivers = o.receiversDir ?? SYNC_PATHS.receiversDir;
  const qroot = o.quarantineRoot ?? SYNC_PATHS.quarantine;
  const sourcesFile = o.sourcesFile ?? SYNC_PATHS.sources;
  const decision = decidePush(o.command, o.peer, readJson<AcceptState>(acceptFile), bootClockMs());
  if (!decision.ok) {
    process.stderr.write(`${REFUSED_PREFIX} ${decision.reason}\n`);
    return REFUSED_EXIT;
  }
  const sources = readJson<Sources>(sourcesFile) ?? {};
  const quarantine = needsQuarantine(sources, decision.dir, o.peer, decision.epoch)
    ? quarantineDir(qroot, decision.dir, o.peer, decision.epoch, new Date(), process.pid)
    : null;
  mkdirSync(receivers, { recursive: true });
  const mark = join(receivers, String(process.pid));
  writeFileSync(mark, `${o.peer} ${decision.epoch} ${decision.dir}\n`);
  // A whole set (the air-gap patch directory): built beside the directory, then exchanged with it in one step.
  const staging = decision.whole ? wholeStaging(decision.dir) : null;
  const live = decision.dir.replace(/\/+$/, '');
  if (staging) {
    try {
      mkdirSync(staging, { recursive: true, mode: 0o750 });
      // The directory keeps its owner through the exchange (rsync sets its mode, not its owner: --no-owner).
      const st = statSync(live, { throwIfNoEntry: false }); // none yet: the staging one becomes it, owned by this account
      if (st) chownSync(staging, st.uid, st.gid);
    } catch (err) {
      // A full disk here says so as rsync would ("No space left on device"): the pusher reports it as such.
      process.stderr.write(`vigil-sync: cannot prepare ${staging} for ${live}: ${(err as Error).message}\n`);
      rmSync(mark, { force: true });
      return 1;
    }
  }
  const argv = staging ? wholeServerArgv(decision.options, staging, existsSync(live) ? live : null) : serverArgv(decision.options, decision.dir, quarantine);
  // Its own process group: rsync's receiving side is two processes (the generator, and the
  // receiver it forks), and both must stop.
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'inherit', detached: true });
  let stopped: string | null = null;
  const signal = (sig: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  const stop = (why: string) => {
    if (stopped) return;
    stopped = why;
    // SIGTERM to both: the receiver moves the file it was writing into the partial directory and
    // exits, where SIGKILL to the generator alone left the forked receiver writing on, or blocked
    // on a pusher that died without closing its connection, its temporary file (`.NAME.XXXXXX`)
    // lying in the synced directory until rsync's timeout. Neither puts anything more in place.
    signal('SIGTERM');
    setTimeout(() => signal('SIGKILL'), KILL_AFTER_MS).unref();
  };
  const onTerm = () => stop('the agent stopped this receiver: its machine is becoming active');
  process.on('SIGTERM', onTerm);
  const recheck = setInterval(() => {
    if (!stillAccepted(o.peer, decision.epoch, readJson<AcceptState>(acceptFile)))
      stop(`the active record moved away from ${o.peer} at epoch ${decision.epoch} during the transfer`);
  }, o.recheckMs ?? 100);
  const code = await new Promise<number>((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`vigil-sync: cannot run rsync: ${err.message}\n`);
      resolve(1);
    });
    child.on('close', (c) => resolve(c ?? 1));
  });
  clearInterval(recheck);
  try {
    // From here to the return nothing awaits: the SIGTERM listener (still on, so the signal cannot
    // kill this process between two steps) runs only afterwards. A stopped receiver exchanges nothing.
    if (!stopped && staging && code === 0) {
      if (!stillAccepted(o.peer, decision.epoch, readJson<AcceptState>(acceptFile)))
        stopped = `the active record moved away from ${o.peer} at epoch ${decision.epoch} during the transfer`;
      else {
        try {
          if (existsSync(live)) {
            exchangeDirs(staging, live);
            retire(staging, live, quarantine);
          } else renameSync(staging, live);
        } catch (err) {
          process.stderr.write(`vigil-sync: ${(err as Error).message}\n`);
          return 1;
        }
      }
    }
    if (stopped) {
      process.stderr.write(`${REFUSED_PREFIX} ${stopped}\n`);
      return REFUSED_EXIT;
    }
    if (code === 0 && decision.full) {
      // A completed full reconciliation: from now on this directory holds exactly what the pusher holds.
      const fresh = readJson<Sources>(sourcesFile) ?? {};
      fresh[decision.dir.replace(/\/+$/, '')] = { node: o.peer, epoch: decision.epoch, at: new Date().toISOString() };
      mkdirSync(dirname(sourcesFile), { recursive: true });
      writeFileSync(`${sourcesFile}.tmp`, JSON.stringify(fresh, null, 2));
      renameSync(`${sourcesFile}.tmp`, sourcesFile);
    }
    return code;
  } finally {
    process.off('SIGTERM', onTerm);
    if (quarantine) pruneEmpty(quarantine, qroot);
    rmSync(mark, { force: true });
  }
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Entry point of the bundled receiver (see bundle.ts). */
export async function receiveMain(): Promise<void> {
  const peer = argValue('--peer');
  if (!peer || !/^[a-z][a-z0-9-]{0,30}$/.test(peer)) {
    process.stderr.write(`${REFUSED_PREFIX} vigil-sync-receive needs --peer <machine> in the authorized_keys line\n`);
    process.exitCode = REFUSED_EXIT;
    return;
  }
  process.exitCode = await receive({
    peer,
    command: process.env.SSH_ORIGINAL_COMMAND,
    acceptFile: process.env.VIGIL_SYNC_ACCEPT_FILE,
    receiversDir: process.env.VIGIL_SYNC_RECEIVERS_DIR,
    quarantineRoot: process.env.VIGIL_SYNC_QUARANTINE,
    sourcesFile: process.env.VIGIL_SYNC_SOURCES,
  });
}
