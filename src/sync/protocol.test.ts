import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  classifyFailure,
  decidePush,
  incrementalArgs,
  needsQuarantine,
  percentile,
  quarantineDir,
  reconcileArgs,
  serverArgv,
  stillAccepted,
  wholeServerArgv,
  wholeStaging,
  type AcceptState,
} from './protocol.ts';

const DIR = '/var/lib/vigil/app/attachments';
const NOW = 1_000_000;
const state: AcceptState = { node: 'app2', active: { node: 'app1', epoch: 7 }, confirmedAtBootMs: NOW - 500, leaseMs: 3000, dirs: [DIR] };
const push = (epoch: number, opts = '-trce.iLsfxCIvu --timeout=30 --delete --force --partial-dir .vigil-sync-partial --numeric-ids', dest = `${DIR}/`) =>
  `vigil-sync-push ${epoch} rsync --server ${opts} . ${dest}`;

test('a push from the active machine at the current epoch is accepted', () => {
  const d = decidePush(push(7), 'app1', state, NOW);
  assert.deepEqual(d, {
    ok: true,
    epoch: 7,
    dir: DIR,
    full: true,
    whole: false,
    options: ['-trce.iLsfxCIvu', '--timeout=30', '--delete', '--force', '--partial-dir', '.vigil-sync-partial', '--numeric-ids'],
  });
  const inc = decidePush(
    push(7, '-trRe.iLsfxCIvu --timeout=30 --force --delete-missing-args --partial-dir .vigil-sync-partial --numeric-ids'),
    'app1',
    state,
    NOW,
  );
  assert.equal(inc.ok && inc.full, false);
  assert.equal(inc.ok, true);
  // A whole-directory reconciliation (the air-gap patch directory), as rsync 3 passes it on.
  const whole = decidePush(
    push(7, '-trce.iLsfxCIvu --timeout=30 --delete-delay --force --partial-dir .vigil-sync-partial --delay-updates --numeric-ids'),
    'app1',
    state,
    NOW,
  );
  assert.equal(whole.ok && whole.full, true);
  assert.equal(whole.ok && whole.whole, true);
  // The whole set is built beside the directory, the live one as --link-dest, then exchanged (receive.ts).
  assert.equal(wholeStaging(DIR), '/var/lib/vigil/app/.attachments.sync-staging');
  const argv = wholeServerArgv(whole.ok ? whole.options : [], wholeStaging(DIR), DIR);
  assert.deepEqual(argv.slice(-3), [`--link-dest=${DIR}`, '.', '/var/lib/vigil/app/.attachments.sync-staging/']);
  assert.ok(!argv.some((a) => a.startsWith('--backup')));
  assert.match(
    refused(push(7, '-trce.iLsfxCIvu --timeout=30 --delete --force --partial-dir .vigil-sync-partial --delay-updates --numeric-ids')),
    /--delay-updates \(a whole-set push\) comes with --delete-delay/,
  );
});

const refused = (command: string | undefined, peer = 'app1', s: AcceptState | null = state, now = NOW) => {
  const d = decidePush(command, peer, s, now);
  assert.equal(d.ok, false, `expected a refusal of ${command}`);
  return d.ok ? '' : d.reason;
};

test('stale epochs, other machines and an unconfirmed agent are refused', () => {
  assert.match(refused(push(6)), /stale push from app1 at epoch 6: the active machine is app1 at epoch 7/);
  assert.match(refused(push(8)), /stale push from app1 at epoch 8/);
  assert.match(refused(push(7), 'app3'), /stale push from app3 at epoch 7: the active machine is app1/);
  assert.match(refused(push(7), 'app2'), /a push from app2 to itself/);
  assert.match(refused(push(7), 'app1', null), /agent on this machine is not running/);
  assert.match(refused(push(7), 'app1', { ...state, confirmedAtBootMs: null }), /has not yet confirmed/);
  const { confirmedAtBootMs: _, ...older } = state;
  assert.match(refused(push(7), 'app1', { ...older, confirmedAtMs: NOW } as unknown as AcceptState), /written by an older agent/);
  assert.match(refused(push(7), 'app1', state, NOW - 5000), /in the future of this machine's boot clock/);
  assert.match(refused(push(7), 'app1', state, NOW + 2600), /last confirmed the active record 3100 ms ago \(lease 3000 ms\)/);
  assert.match(refused(push(7), 'app1', { ...state, active: null }), /no machine is active yet/);
});

test('anything but an rsync receive into a synced directory is refused', () => {
  assert.match(refused(undefined), /no command/);
  assert.match(refused('cat /etc/shadow'), /not a file-sync push/);
  assert.match(refused('vigil-sync-push 7 rsync --server --sender -tpre.iLsfxCIvu . /var/lib/vigil/app/attachments/'), /pushes only/);
  assert.match(refused(push(7, '-tpre.iLsfxCIvu', '/etc/')), /\/etc\/ is not a synced directory/);
  assert.match(refused(push(7, '-tpre.iLsfxCIvu', `${DIR}/../../../../etc`)), /not a synced directory/);
  assert.match(refused(push(7, '-tpre.iLsfxCIvu --log-file=/tmp/x')), /rsync option --log-file=\/tmp\/x is not one file sync uses/);
  assert.match(refused(push(7, '-tpre.iLsfxCIvu --partial-dir /tmp')), /rsync option --partial-dir/);
  assert.match(refused(push(7, '-stpre.iLsfxCIvu')), /rsync option -stpre/);
  // M4: symlinks, devices and specials, owner and group are never carried; an older pusher's `-a` is named.
  assert.match(
    refused(push(7, '-logDtpre.iLsfxCIvu')),
    /rsync option -logDtpre\.iLsfxCIvu is not one file sync uses \(logD: symlinks, devices, owner and group are not carried; is the agent on app1 older/,
  );
  for (const f of ['-ltre.iLsfxCIvu', '-Dtre.iLsfxCIvu', '-otre.iLsfxCIvu', '-gtre.iLsfxCIvu', '-Ltre.iLsfxCIvu', '-Htre.iLsfxCIvu', '-xtre.iLsfxCIvu'])
    assert.match(refused(push(7, f)), new RegExp(`rsync option ${f.replaceAll('.', '\\.')} is not one file sync uses`), f);
  assert.match(refused(push(7, '-tpre.iLsfxCIvu;touch')), /unexpected characters/);
  assert.match(refused(`vigil-sync-push 7 rsync --server -tpre.iLsfxCIvu "$(id)" . ${DIR}/`), /unexpected characters/);
  assert.match(refused('vigil-sync-push 7 rsync --server -tpre.iLsfxCIvu'), /expected "\. <directory>"/);
});

test('the receiver stops when the record moves away from the pusher', () => {
  assert.equal(stillAccepted('app1', 7, state), true);
  assert.equal(stillAccepted('app1', 7, { ...state, active: { node: 'app1', epoch: 8 } }), false);
  assert.equal(stillAccepted('app1', 7, { ...state, active: { node: 'app2', epoch: 8 } }), false);
  assert.equal(stillAccepted('app1', 7, null), false);
});

test('quarantine until a full reconciliation from the same machine and epoch completed here', () => {
  assert.equal(needsQuarantine({}, DIR, 'app1', 7), true);
  assert.equal(needsQuarantine({ [DIR]: { node: 'app1', epoch: 6, at: 'x' } }, `${DIR}/`, 'app1', 7), true);
  assert.equal(needsQuarantine({ [DIR]: { node: 'app2', epoch: 7, at: 'x' } }, DIR, 'app1', 7), true);
  assert.equal(needsQuarantine({ [DIR]: { node: 'app1', epoch: 7, at: 'x' } }, `${DIR}/`, 'app1', 7), false);
  const q = quarantineDir('/var/lib/vigil/sync/quarantine', `${DIR}/`, 'app1', 7, new Date('2026-11-25T01:02:03.456Z'), 42);
  assert.equal(q, '/var/lib/vigil/sync/quarantine/2026-11-25T01-02-03-456Z-epoch-7-from-app1-42/var/lib/vigil/app/attachments');
  const forced = ['--no-links', '--no-devices', '--no-specials', '--no-owner', '--no-group', '--perms', '--chmod=D0750,F0640'];
  assert.deepEqual(serverArgv(['-tpre.iLsfxCIvu', '--delete'], DIR, q), [
    'rsync',
    '--server',
    '-tpre.iLsfxCIvu',
    '--delete',
    ...forced,
    '--backup',
    `--backup-dir=${q}`,
    '.',
    `${DIR}/`,
  ]);
  assert.deepEqual(serverArgv(['-tpre.iLsfxCIvu'], DIR, null), ['rsync', '--server', '-tpre.iLsfxCIvu', ...forced, '.', `${DIR}/`]);
});

test('the pusher names the epoch, the directory and only options the receiver accepts', () => {
  const t = { address: '10.0.0.12', sshPort: 22, epoch: 7, sshCommand: 'ssh -x', timeoutSeconds: 30 };
  const inc = incrementalArgs(DIR, t);
  assert.ok(inc.includes('--rsync-path=vigil-sync-push 7 rsync'));
  assert.equal(inc[0], '-rt', 'no -a: no symlinks, devices, owner or group');
  assert.ok(!inc.some((a) => /^-[a-zA-Z]*[aloDg]/.test(a) && !a.startsWith('--')), inc.join(' '));
  assert.deepEqual(inc.slice(-2), [`${DIR}/`, `10.0.0.12:${DIR}/`]);
  assert.ok(inc.includes('--delete-missing-args') && inc.includes('--files-from=-') && !inc.includes('--delete'));
  const full = reconcileArgs(DIR, t, true, '/elsewhere');
  assert.ok(full.includes('--delete') && full.includes('--checksum'));
  assert.equal(full.at(-1), '10.0.0.12:/elsewhere/');
  assert.ok(!full.includes('--delay-updates') && !full.includes('--delete-delay'));
  // A directory held as one set: every change lands at the end, deletions included.
  const whole = reconcileArgs(DIR, t, true, DIR, false, true, '/proc/self/fd/3');
  assert.ok(whole.includes('--delay-updates') && whole.includes('--delete-delay') && !whole.includes('--delete'), whole.join(' '));
  assert.deepEqual(whole.slice(-2), ['/proc/self/fd/3/', `10.0.0.12:${DIR}/`], 'read through the pinned handle');
});

test("rsync's failures are told apart: refused, disk full, unreachable, other", () => {
  assert.deepEqual(
    classifyFailure(
      12,
      'vigil-sync refused: stale push from app1 at epoch 6: the active machine is app2 at epoch 7\nrsync: connection unexpectedly closed',
      'app2',
      DIR,
    ),
    {
      kind: 'refused',
      message: 'app2 refused the push: stale push from app1 at epoch 6: the active machine is app2 at epoch 7',
    },
  );
  assert.equal(classifyFailure(11, 'rsync: [receiver] write failed on "/x": No space left on device (28)', 'app2', DIR).kind, 'disk-full');
  // The receiver's own message when the staging directory of a whole set cannot be made (node's wording).
  assert.equal(
    classifyFailure(1, 'vigil-sync: cannot prepare /x/.p.sync-staging for /x/p: ENOSPC: no space left on device, mkdir', 'app2', DIR).kind,
    'disk-full',
  );
  assert.equal(classifyFailure(255, 'ssh: connect to host 10.0.0.12 port 22: Connection refused', 'app2', DIR).kind, 'unreachable');
  assert.equal(classifyFailure(255, 'Host key verification failed.', 'app2', DIR).kind, 'unreachable');
  const other = classifyFailure(23, 'rsync: some error\nrsync error: some files could not be transferred (code 23)', 'app2', DIR);
  assert.equal(other.kind, 'failed');
  assert.match(other.message, /exit 23.*code 23/);
});

test('percentiles by nearest rank', () => {
  assert.equal(percentile([], 99), 0);
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  assert.equal(
    percentile(
      Array.from({ length: 100 }, (_, i) => i + 1),
      99,
    ),
    99,
  );
});
