/**
 * File sync's rules, as pure functions: what a standby accepts, what the active machine runs, and
 * how rsync's failures read. The active machine's agent pushes with rsync over SSH; on the
 * standby the push arrives at the SSH forced command `vigil-sync-receive` (src/sync/receive.ts),
 * which accepts it only from the machine that is active at the epoch the push carries, as the
 * standby's own agent last confirmed in etcd (the accept file below). See docs/file-sync.md.
 */
import { ROOTS } from '../layout/paths.ts';
import type { SyncErrorKind } from '../model/ha.ts';

/** The first word of the remote command a push asks for; the epoch follows it. */
export const PUSH_MARKER = 'vigil-sync-push';
/** Partly received large files wait here (relative to the synced directory) to resume; never synced, never deleted by a sync. */
export const PARTIAL_DIR = '.vigil-sync-partial';
/** The receiver's exit status when it refuses a push (ssh passes it back to rsync and to the pusher). */
export const REFUSED_EXIT = 77;
export const REFUSED_PREFIX = 'vigil-sync refused:';

export const SYNC_PATHS = {
  /** The agent's view of who may push, rewritten at each confirmation (AcceptState). */
  acceptFile: `${ROOTS.run}/sync/accept.json`,
  /** One empty file per running receiver, named by its pid: the agent stops them when its machine becomes active. */
  receiversDir: `${ROOTS.run}/sync/receivers`,
  /** ssh's shared connections to the standbys. */
  controlDir: `${ROOTS.run}/sync/ssh`,
  /** The machine's sync key (private key mode 600) and the pinned host keys of the other app machines. */
  key: `${ROOTS.etc}/sync/id_ed25519`,
  knownHosts: `${ROOTS.etc}/sync/known_hosts`,
  /** Who may push here: one restricted line per other app machine (forced command, source address). */
  authorizedKeys: `${ROOTS.etc}/ssh/authorized_keys`,
  /** Files moved aside because they never reached the active machine; Vigil never deletes them. */
  quarantine: `${ROOTS.data}/sync/quarantine`,
  /** Per synced directory, the (machine, epoch) whose full reconciliation last completed here. */
  sources: `${ROOTS.data}/sync/sources.json`,
} as const;

/** What a standby's agent writes for its receivers: the active record it confirmed, and when. */
export interface AcceptState {
  /** This machine. */
  node: string;
  active: { node: string; epoch: number } | null;
  /**
   * When the confirmation's read was sent, on this machine's boot clock (src/util/boot-clock.ts,
   * ms; it goes on through a suspend and no clock step moves it); null before the first one.
   * Absent in a file an older agent wrote (then in wall-clock ms, `confirmedAtMs`): refused.
   */
  confirmedAtBootMs: number | null;
  /** A confirmation older than this no longer vouches for anything. */
  leaseMs: number;
  /** The synced directories: the only destinations a push may name. */
  dirs: string[];
}

/** Per synced directory: the machine and epoch of the last full reconciliation received. */
export type Sources = Record<string, { node: string; epoch: number; at: string }>;

/**
 * `full`: a reconciliation (the standby's directory becomes what the pusher holds). `whole`: a
 * directory held as one set (the air-gap patch directory, marked by `--delay-updates`): the
 * receiver builds the new set beside it and exchanges the two in one step (receive.ts).
 */
export type PushDecision = { ok: true; epoch: number; dir: string; full: boolean; whole: boolean; options: string[] } | { ok: false; reason: string };

const SAFE_TOKEN = /^[A-Za-z0-9._/=,:@+-]+$/;
/**
 * rsync's compact server flags: transfer options, then `e.` and the protocol capabilities. Only
 * what the pusher sends: `r` recursive, `t` times, `c` checksum (full reconciliation), `R`
 * (implied by `--files-from`, incremental pushes), and `p` (perms; the receiver forces its own
 * modes anyway). Refused: `l` (symlinks), `D` (devices, FIFOs, sockets), `o`/`g` (the pusher's
 * owner and group), `s` (secluded args, which would move the paths out of sight), and anything
 * else. An older pusher (`-a`: `-logDtpr`) is refused until its agent runs this version.
 */
const SHORT_FLAGS = /^-[tprcR]+e\.[A-Za-z]+$/;
/**
 * What the receiver adds after the pusher's options, whatever those were (rsync: the last one
 * wins): no symlinks, no devices or special files, no owner or group from the pusher (files belong
 * to the receiving account), and fixed modes (no setuid, nothing for others). A compromised
 * active machine can then only put plain files and directories into the synced directories.
 */
export const RECEIVER_FORCED = ['--no-links', '--no-devices', '--no-specials', '--no-owner', '--no-group', '--perms', '--chmod=D0750,F0640'] as const;
// rsync passes --max-delete=0 on as -1; --delete-delay and --delay-updates: a whole-directory reconciliation (reconcileArgs)
const LONG_OPTIONS = new Set([
  '--delete',
  '--delete-delay',
  '--delay-updates',
  '--force',
  '--delete-missing-args',
  '--numeric-ids',
  `--partial-dir=${PARTIAL_DIR}`,
  '--max-delete=-1',
]);
const TIMEOUT_OPTION = /^--timeout=\d{1,5}$/;

const trimSlash = (p: string) => (p.length > 1 ? p.replace(/\/+$/, '') : p);

/**
 * Decides whether a push (the SSH command the pusher asked for) may run here. The checks, in
 * order: the command is exactly an rsync receive into one synced directory with options the
 * pusher uses; the agent here confirmed the active record within the lease; the record names the
 * pushing machine at the epoch the push carries.
 */
export function decidePush(command: string | undefined, peer: string, state: AcceptState | null, nowBootMs: number): PushDecision {
  const refuse = (reason: string): PushDecision => ({ ok: false, reason });
  if (!command) return refuse('no command: this key only carries file-sync pushes');
  const tokens = command.trim().split(/\s+/);
  const bad = tokens.find((t) => !SAFE_TOKEN.test(t));
  if (bad !== undefined) return refuse(`unexpected characters in ${JSON.stringify(bad)}`);
  const [marker, epochText, rsync, server, ...rest] = tokens;
  if (marker !== PUSH_MARKER || !epochText || !/^\d{1,15}$/.test(epochText) || rsync !== 'rsync' || server !== '--server')
    return refuse(`not a file-sync push: expected "${PUSH_MARKER} <epoch> rsync --server ...", got "${tokens.slice(0, 4).join(' ')} ..."`);
  if (rest.length < 3 || rest[rest.length - 2] !== '.') return refuse('not an rsync receive: expected ". <directory>" at the end');
  const dest = rest[rest.length - 1]!;
  const options = rest.slice(0, -2);
  for (let i = 0; i < options.length; i++) {
    const o = options[i]!;
    if (o === '--sender') return refuse('reading files from this machine is not allowed: pushes only');
    if (o === '--partial-dir' && options[i + 1] === PARTIAL_DIR) {
      i++; // rsync passes it on as two words
      continue;
    }
    if (/^-[A-Za-z]/.test(o) && !o.startsWith('--') && !SHORT_FLAGS.test(o)) {
      const flags = o.slice(1).split('e.')[0] ?? '';
      const extra = [...new Set(flags.replace(/[tprcR]/g, ''))].join('');
      return refuse(
        `rsync option ${o} is not one file sync uses${extra ? ` (${extra}: symlinks, devices, owner and group are not carried; is the agent on ${peer} older than this machine's? apply updates it)` : ''}`,
      );
    }
    if (!SHORT_FLAGS.test(o) && !LONG_OPTIONS.has(o) && !TIMEOUT_OPTION.test(o)) return refuse(`rsync option ${o} is not one file sync uses`);
  }
  if (!state) return refuse('the agent on this machine is not running (no accept file): it must vouch for the active machine');
  const dir = state.dirs.find((d) => trimSlash(d) === trimSlash(dest));
  if (!dir || !dest.startsWith('/')) return refuse(`${dest} is not a synced directory here (${state.dirs.join(', ')})`);
  const epoch = Number(epochText);
  if (peer === state.node) return refuse(`a push from ${peer} to itself`);
  if (state.confirmedAtBootMs === undefined)
    return refuse(`the accept file on ${state.node} was written by an older agent (wall-clock time): wait for the agent there to restart with this version`);
  if (state.confirmedAtBootMs === null) return refuse(`the agent on ${state.node} has not yet confirmed the active record in etcd`);
  const age = nowBootMs - state.confirmedAtBootMs;
  if (age < -1000)
    return refuse(`the accept file on ${state.node} was confirmed ${-age} ms in the future of this machine's boot clock (written before a reboot?)`);
  if (age >= state.leaseMs)
    return refuse(`the agent on ${state.node} last confirmed the active record ${age} ms ago (lease ${state.leaseMs} ms): it cannot vouch for ${peer}`);
  if (!state.active) return refuse('no machine is active yet');
  if (state.active.node !== peer || state.active.epoch !== epoch)
    return refuse(`stale push from ${peer} at epoch ${epoch}: the active machine is ${state.active.node} at epoch ${state.active.epoch}`);
  const whole = options.includes('--delay-updates');
  if (whole && !options.includes('--delete-delay')) return refuse('--delay-updates (a whole-set push) comes with --delete-delay');
  return { ok: true, epoch, dir, full: options.includes('--delete') || options.includes('--delete-delay'), whole, options };
}

/** Whether the receiver is still entitled to run a push it accepted (checked during the transfer). */
export function stillAccepted(peer: string, epoch: number, state: AcceptState | null): boolean {
  return state?.active?.node === peer && state.active.epoch === epoch;
}

/**
 * Until a full reconciliation from this (machine, epoch) has completed here, this machine may hold
 * files that never reached the active one: every file a push would delete or overwrite is moved
 * into a quarantine directory instead. After it, the pushes carry the active machine's own
 * changes and apply them as they are.
 */
export function needsQuarantine(sources: Sources, dir: string, peer: string, epoch: number): boolean {
  const s = sources[trimSlash(dir)];
  return !(s && s.node === peer && s.epoch === epoch);
}

/** Where one push's displaced files go: per push, so a later push never overwrites what an earlier one kept. */
export function quarantineDir(root: string, dir: string, peer: string, epoch: number, at: Date, pid: number): string {
  const stamp = at.toISOString().replace(/[:.]/g, '-');
  return `${root}/${stamp}-epoch-${epoch}-from-${peer}-${pid}${trimSlash(dir)}`;
}

/** The rsync process the receiver runs: the client's options, then the receiver's own (RECEIVER_FORCED), plus the backup into quarantine when needed. */
export function serverArgv(options: string[], dir: string, quarantine: string | null): string[] {
  return ['rsync', '--server', ...options, ...RECEIVER_FORCED, ...(quarantine ? ['--backup', `--backup-dir=${quarantine}`] : []), '.', `${trimSlash(dir)}/`];
}

/** Where a whole-set push builds the new set: beside the directory (same filesystem), kept between pushes so a cut one resumes. */
export function wholeStaging(dir: string): string {
  const d = trimSlash(dir);
  const slash = d.lastIndexOf('/');
  return `${d.slice(0, slash + 1)}.${d.slice(slash + 1)}.sync-staging`;
}

/**
 * The rsync process of a whole-set push: into the staging directory, with the live directory as
 * `--link-dest` (files that did not change are hard links to the live ones, not sent again).
 * No backup: the receiver quarantines what the exchange displaced itself (receive.ts).
 */
export function wholeServerArgv(options: string[], staging: string, linkDest: string | null): string[] {
  return ['rsync', '--server', ...options, ...RECEIVER_FORCED, ...(linkDest ? [`--link-dest=${trimSlash(linkDest)}`] : []), '.', `${trimSlash(staging)}/`];
}

export interface PushTarget {
  /** Peer machine's address and SSH port. */
  address: string;
  sshPort: number;
  epoch: number;
  /** ssh's options for this machine (key, pinned host keys, connection sharing). */
  sshCommand: string;
  timeoutSeconds: number;
}

/** The ssh command rsync runs: key only, pinned host keys only, one shared connection per standby. */
export function sshCommand(o: { key: string; knownHosts: string; controlDir: string; port: number; connectTimeoutSeconds: number }): string {
  return [
    'ssh',
    '-F /dev/null',
    `-i ${o.key}`,
    `-p ${o.port}`,
    '-l root',
    '-o IdentitiesOnly=yes',
    '-o BatchMode=yes',
    '-o StrictHostKeyChecking=yes',
    `-o UserKnownHostsFile=${o.knownHosts}`,
    '-o GlobalKnownHostsFile=/dev/null',
    '-o ControlMaster=auto',
    `-o ControlPath=${o.controlDir}/%C`,
    '-o ControlPersist=300',
    `-o ConnectTimeout=${o.connectTimeoutSeconds}`,
    '-o ServerAliveInterval=2',
    '-o ServerAliveCountMax=3',
    '-o LogLevel=ERROR',
  ].join(' ');
}

/** Recursive with times: no symlinks, devices, owner or group (the receiver refuses them), no modes (the receiver sets its own). */
const baseArgs = (t: PushTarget) => [
  '-rt',
  '--numeric-ids',
  `--partial-dir=${PARTIAL_DIR}`,
  `--timeout=${t.timeoutSeconds}`,
  '-e',
  t.sshCommand,
  `--rsync-path=${PUSH_MARKER} ${t.epoch} rsync`,
];

/**
 * rsync arguments for the changed paths of one directory (read NUL-separated from stdin): each is
 * sent (directories with their content) or, when it no longer exists here, deleted there.
 */
export function incrementalArgs(dir: string, t: PushTarget, remoteDir = dir): string[] {
  return [...baseArgs(t), '-r', '--force', '--files-from=-', '--from0', '--delete-missing-args', `${trimSlash(dir)}/`, `${t.address}:${trimSlash(remoteDir)}/`];
}

/**
 * rsync arguments for a full reconciliation of one directory; `checksum` compares content, not
 * size and time. `sourceEmpty`: the directory here is empty, which is more often an unmounted
 * volume or a lost disk than an application that deleted everything; then nothing is deleted
 * there (rsync stops with exit 25 if it would have) and the operator is told. `whole`: the
 * directory is replaced as one set (the air-gap patch directory).
 */
export function reconcileArgs(dir: string, t: PushTarget, checksum: boolean, remoteDir = dir, sourceEmpty = false, whole = false, source = dir): string[] {
  return [
    ...baseArgs(t),
    // `whole`: the receiver builds the set beside the directory and exchanges the two in one step
    // at the end (receive.ts), so a push cut short (the active machine dies) leaves the standby's
    // old set, not a mix. --delay-updates is what tells the receiver; it also keeps every file in
    // the staging directory's holding place until the whole transfer has arrived.
    ...(whole ? ['--delete-delay', '--delay-updates'] : ['--delete']),
    ...(sourceEmpty ? ['--max-delete=0'] : []),
    '--force',
    ...(checksum ? ['--checksum'] : []),
    `${trimSlash(source)}/`,
    `${t.address}:${trimSlash(remoteDir)}/`,
  ];
}

/** What went wrong with a push, from rsync's exit status and its (and the receiver's) messages. */
export function classifyFailure(code: number, stderr: string, peer: string, dir: string): { kind: SyncErrorKind; message: string } {
  const refused = stderr.split('\n').find((l) => l.includes(REFUSED_PREFIX));
  if (refused)
    return { kind: 'refused', message: `${peer} refused the push: ${refused.slice(refused.indexOf(REFUSED_PREFIX) + REFUSED_PREFIX.length).trim()}` };
  if (code === 25 || /Deletions stopped due to --max-delete/.test(stderr))
    return {
      kind: 'failed',
      message: `${dir} is empty on this machine while ${peer} holds files there: not emptying ${peer}. If the directory's volume is not mounted, mount it; if the files were really all deleted, delete them on ${peer} too`,
    };
  if (/No space left on device|Disk quota exceeded/i.test(stderr))
    return { kind: 'disk-full', message: `${peer} has no space left for ${dir}: changes wait here until space is freed there (df -h ${dir} on ${peer})` };
  if (code === 255 || /Connection (refused|timed out|closed)|No route to host|Could not resolve|Host key verification failed|Permission denied/.test(stderr)) {
    const line = lastLine(stderr);
    return { kind: 'unreachable', message: `${peer} cannot be reached over SSH: ${line || `ssh exited with ${code}`}` };
  }
  return { kind: 'failed', message: `rsync to ${peer} failed (exit ${code}): ${lastLine(stderr) || 'no message'}` };
}

/** rsync exit 24: some source files vanished during the transfer. Their deletion is a change of its own, carried next. */
export const isSuccess = (code: number): boolean => code === 0 || code === 24;

function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .pop() ?? ''
  );
}

/** Nearest-rank percentile of a sample (sorted copy), or 0 for none. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
