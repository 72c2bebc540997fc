import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { describe, it } from 'node:test';
import { PATHS } from '../../config/paths.ts';
import { clusterFixture, secretsFixture } from '../../render/fixtures.ts';
import { renderAll } from '../../render/index.ts';
import { COMMANDS, UNITS, daemonCommand } from '../../render/systemd.ts';
import { UnitError, bootOrder, expandArgv, parseExecLine, parseInstall, parseTimespan, parseUnit, restartWanted, splitWords, unitName, validUnitName } from './unit.ts';

/** Every unit the presets render, with the machine it is for. */
const rendered = (['pair', 'distributed'] as const).flatMap((t) =>
  renderAll(clusterFixture(t), secretsFixture())
    .filter((f) => f.path.startsWith(`${PATHS.systemdDir}/`))
    .map((f) => ({ topology: t, machine: f.machine, name: basename(f.path), content: f.content })),
);
/** Settings of Vigil's units the lab does not implement, on purpose (hardening, limits, logging). */
const IGNORED = ['LimitNOFILE', 'NoNewPrivileges', 'StandardOutput', 'StandardError', 'SyslogIdentifier'];

const argvOf = (cmd: { argv: string[] } | undefined, env: Record<string, string> = {}) => expandArgv(cmd as never, env);

describe('unit files', () => {
  it('parses every unit Vigil renders, ignoring only hardening, limits and logging settings', () => {
    assert.ok(rendered.length >= 14, `${rendered.length} units`);
    for (const f of rendered) {
      const u = parseUnit(f.name, f.content);
      assert.ok(u.execStart.length === 1, `${f.name}: one ExecStart`);
      assert.ok(['simple', 'exec', 'notify'].includes(u.type), `${f.name}: ${u.type}`);
      for (const note of u.notes) assert.ok(IGNORED.some((k) => note.includes(`] ${k}= is not implemented`)), `${f.topology}/${f.machine}/${f.name}: ${note}`);
      assert.ok(u.after.includes('network-online.target'), `${f.name}: After=`);
    }
  });

  it('gets back the exact command lines of the components and daemons', () => {
    const find = (name: string, machine = 'observer') => {
      const f = rendered.find((x) => x.name === name && x.machine === machine);
      assert.ok(f, `${machine} has ${name}`);
      return parseUnit(f.name, f.content);
    };
    assert.deepEqual(argvOf(find(UNITS.etcd).execStart[0]), COMMANDS.etcd);
    assert.deepEqual(argvOf(find(UNITS.haproxy).execStart[0]), COMMANDS.haproxy);
    assert.deepEqual(argvOf(find(UNITS.patroni, 'db1').execStart[0]), COMMANDS.patroni);
    const nginx = find(UNITS.nginx, 'app1');
    assert.deepEqual(argvOf(nginx.execStart[0]), COMMANDS.nginx, "nginx's `-g 'daemon off;'` survives quoting");
    assert.deepEqual(argvOf(nginx.execStartPre[0]), [COMMANDS.nginx[0], '-t', '-q', ...COMMANDS.nginx.slice(1)]);
    assert.deepEqual(argvOf(find(UNITS.agent, 'db2').execStart[0]), daemonCommand('agent', 'db2'));
    assert.deepEqual(argvOf(find(UNITS.observer).execStart[0]), daemonCommand('observer', 'observer'));
  });

  it('reads the settings of the rendered units', () => {
    const unit = (name: string, machine: string) => parseUnit(name, rendered.find((x) => x.name === name && x.machine === machine)!.content);
    const etcd = unit(UNITS.etcd, 'observer');
    assert.equal(etcd.type, 'exec');
    assert.equal(etcd.user, 'etcd');
    assert.equal(etcd.group, 'etcd');
    assert.deepEqual(etcd.directories.state, { paths: ['vigil/etcd'], mode: 0o700 });
    assert.equal(etcd.restart, 'always');
    assert.equal(etcd.restartMs, 1000);
    assert.deepEqual(etcd.wantedBy, ['multi-user.target']);

    const patroni = unit(UNITS.patroni, 'db1');
    assert.equal(patroni.killMode, 'process');
    assert.equal(patroni.timeoutStopMs, 60_000);
    assert.equal(patroni.timeoutStartMs, 60_000);
    assert.equal(patroni.restart, 'on-failure');
    assert.deepEqual(patroni.directories.runtime, { paths: ['vigil/postgresql'], mode: 0o700 });
    assert.deepEqual(argvOf(patroni.execReload[0], { MAINPID: '4242' }), ['/bin/kill', '-HUP', '4242']);

    const haproxy = unit(UNITS.haproxy, 'observer');
    assert.equal(haproxy.type, 'notify');
    assert.equal(haproxy.runtimeDirectoryPreserve, 'yes');
    assert.equal(haproxy.killMode, 'mixed');
    assert.deepEqual(haproxy.successExitStatus.codes, [143]);
    assert.equal(haproxy.execReload.length, 3, 'ExecReload= lines accumulate');
    assert.equal(haproxy.execReload[1]!.ignoreFailure, true, 'saving the servers\' state is best effort');
    assert.deepEqual(argvOf(haproxy.execReload[1], {}).slice(0, 2), ['/bin/sh', '-c']);
    assert.deepEqual(argvOf(haproxy.execReload[2], { MAINPID: '7' }), ['/bin/kill', '-USR2', '7']);

    const nginx = unit(UNITS.nginx, 'app1');
    assert.equal(nginx.timeoutStopMs, 5000);
    assert.equal(nginx.restart, 'no');
    assert.deepEqual(nginx.wantedBy, [], 'no [Install]: never started at boot');

    const refapp = unit(UNITS.refapp, 'app1');
    assert.deepEqual(refapp.environment, [['NODE_ENV', 'production']]);

    const agent = unit(UNITS.agent, 'db1');
    assert.ok(agent.after.includes(UNITS.patroni));
    assert.equal(agent.killMode, 'process');
    assert.equal(agent.timeoutStopMs, 10_000);
  });

  it('orders the boot by After= among the units that start', () => {
    const units = rendered.filter((f) => f.topology === 'pair' && f.machine === 'observer').map((f) => parseUnit(f.name, f.content));
    const order = bootOrder(units);
    assert.ok(order.indexOf(UNITS.observer) > order.indexOf(UNITS.etcd));
    assert.ok(order.indexOf(UNITS.observer) > order.indexOf(UNITS.haproxy));
    assert.deepEqual(bootOrder([{ name: 'b.service', after: ['a.service'], before: [] }, { name: 'a.service', after: [], before: [] }, { name: 'c.service', after: [], before: ['a.service'] }]), ['c.service', 'a.service', 'b.service']);
    assert.deepEqual(bootOrder([{ name: 'x.service', after: ['y.service'], before: [] }, { name: 'y.service', after: ['x.service'], before: [] }]).length, 2, 'a cycle still starts both');
  });

  it('splits command lines like systemd: quotes, escapes, %% and $$, prefixes, `;`', () => {
    assert.deepEqual(splitWords(`a "b c" 'd e' f\\sg "h\\"i" "j\\\\k" x"y z"w \\x41\\n`), ['a', 'b c', 'd e', 'f g', 'h"i', 'j\\k', 'xy zw', 'A\n']);
    const [c] = parseUnit('t.service', '[Service]\nExecStart=-/bin/echo "100%%" "$$HOME" ${HOME} $ARGS "$${X}"\n').execStart;
    assert.equal(c!.ignoreFailure, true);
    assert.equal(c!.path, '/bin/echo');
    assert.deepEqual(expandArgv(c!, { HOME: '/root', ARGS: 'one  two' }), ['/bin/echo', '100%', '$HOME', '/root', 'one', 'two', '${X}']);
    assert.deepEqual(expandArgv(c!, {}), ['/bin/echo', '100%', '$HOME', '', '${X}'], 'an unset $WORD is dropped, an unset ${NAME} is empty');
    const two = parseExecLine('/bin/true ; +/bin/false \\; x');
    assert.equal(two.length, 2);
    assert.equal(two[1]!.privileged, true);
    assert.deepEqual(two[1]!.argv, ['/bin/false', ';', 'x']);
    assert.deepEqual(parseExecLine('@/bin/sh fake -c true')[0]!.argv, ['fake', '-c', 'true']);
    assert.equal(parseExecLine(':/bin/echo $X')[0]!.noSubstitution, true);
    assert.deepEqual(expandArgv(parseExecLine(':/bin/echo $X')[0]!, { X: 'y' }), ['/bin/echo', '$X']);
    assert.throws(() => parseExecLine('/bin/echo "open'), /unterminated/);
    assert.throws(() => parseExecLine('/bin/echo a\\ b'), /invalid escape/, 'only C escapes, as systemd');
    assert.deepEqual(argvOf(parseUnit('s@inst.service', '[Service]\nExecStart=/bin/echo %n %N %p %i %t/%S\n').execStart[0]), ['/bin/echo', 's@inst.service', 's@inst', 's', 'inst', '/run//var/lib']);
  });

  it('accumulates list settings, resets them with an empty value, and joins continued lines', () => {
    const u = parseUnit(
      'x.service',
      [
        '# comment', '; comment too', '[Unit]', 'Description = spaced  ', 'After=a.service b.service', 'After=c.service',
        '[Service]', 'ExecStartPre=/bin/one', 'ExecStartPre=', 'ExecStartPre=/bin/two', 'ExecStart=/bin/sleep \\', '  1000',
        'Environment="A=x y" B=z', 'Environment=C=%%', 'KillSignal=INT', 'KillMode=process', 'TimeoutStopSec=1min 30s',
        'RestartSec=500ms', 'Restart=on-failure', 'SuccessExitStatus=3 SIGUSR1', 'RuntimeDirectory=a b/c', 'RuntimeDirectoryMode=0750',
        'RuntimeDirectoryPreserve=restart', 'NoSuchSetting=1', 'User=nobody',
        '[Install]', 'WantedBy=multi-user.target', 'Alias=y.service',
      ].join('\n'),
    );
    assert.equal(u.description, 'spaced');
    assert.deepEqual(u.after, ['a.service', 'b.service', 'c.service']);
    assert.deepEqual(u.execStartPre.map((c) => c.path), ['/bin/two']);
    assert.deepEqual(u.execStart[0]!.argv, ['/bin/sleep', '1000']);
    assert.deepEqual(u.environment, [['A', 'x y'], ['B', 'z'], ['C', '%']]);
    assert.equal(u.killSignal, 'SIGINT');
    assert.equal(u.timeoutStopMs, 90_000);
    assert.equal(u.restartMs, 500);
    assert.deepEqual(u.successExitStatus, { codes: [3], signals: ['SIGUSR1'] });
    assert.deepEqual(u.directories.runtime, { paths: ['a', 'b/c'], mode: 0o750 });
    assert.equal(u.runtimeDirectoryPreserve, 'restart');
    assert.equal(u.user, 'nobody');
    assert.deepEqual(u.alias, ['y.service']);
    assert.equal(u.notes.length, 1);
    assert.match(u.notes[0]!, /NoSuchSetting= is not implemented/);
  });

  it('refuses what systemd refuses, and notes a bad value without failing the unit', () => {
    assert.throws(() => parseUnit('x.service', '[Service]\nType=exec\n'), UnitError);
    assert.throws(() => parseUnit('x.service', '[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n'), /more than one ExecStart/);
    assert.throws(() => parseUnit('x.service', '[Service]\nType=forking\nExecStart=/bin/a\n'), /Type=forking is not supported/);
    const oneshot = parseUnit('x.service', '[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\nRemainAfterExit=yes\n');
    assert.equal(oneshot.execStart.length, 2);
    assert.equal(oneshot.remainAfterExit, true);
    const forking = '[Service]\nType=forking\nExecStart=/usr/sbin/nginx\n\n[Install]\nWantedBy=multi-user.target\nAlias=web.service\n';
    assert.deepEqual(parseInstall('nginx.service', forking), { wantedBy: ['multi-user.target'], requiredBy: [], alias: ['web.service'] }, 'enable reads [Install] of any unit');
    const bad = parseUnit('x.service', '[Service]\nExecStart=/bin/a\nRestartSec=soon\nRuntimeDirectory=/abs\n');
    assert.equal(bad.restartMs, 100);
    assert.equal(bad.notes.length, 2);
  });

  it('reads time spans, restart decisions and unit names as systemd does', () => {
    assert.equal(parseTimespan('90'), 90_000);
    assert.equal(parseTimespan('2min'), 120_000);
    assert.equal(parseTimespan('1.5s'), 1500);
    assert.equal(parseTimespan('infinity'), Infinity);
    assert.throws(() => parseTimespan('5 parsecs'));
    const u = (restart: 'always' | 'on-failure' | 'no') => ({ restart, successExitStatus: { codes: [143], signals: [] }, restartPrevent: { codes: [], signals: [] } });
    assert.equal(restartWanted(u('on-failure'), { code: 0, signal: null }), false);
    assert.equal(restartWanted(u('on-failure'), { code: 143, signal: null }), false, 'SuccessExitStatus=143 is clean');
    assert.equal(restartWanted(u('on-failure'), { code: 1, signal: null }), true);
    assert.equal(restartWanted(u('on-failure'), { code: null, signal: 'SIGKILL' }), true);
    assert.equal(restartWanted(u('on-failure'), { code: null, signal: 'SIGTERM' }), false);
    assert.equal(restartWanted(u('always'), { code: 0, signal: null }), true);
    assert.equal(restartWanted(u('no'), { code: 1, signal: null }), false);
    assert.equal(unitName('ssh'), 'ssh.service');
    assert.equal(unitName('vigil-etcd.service'), 'vigil-etcd.service');
    assert.equal(unitName('multi-user.target'), 'multi-user.target');
    assert.equal(validUnitName('vigil-etcd.service'), true);
    assert.equal(validUnitName('getty@tty1.service'), true);
    assert.equal(validUnitName('../../tmp/x.service'), false);
    assert.equal(validUnitName('.service'), false);
  });
});
