import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopback, listensOn, parseDf, parseExecStart, parseSha256sum, parseSs, parseStat, parseStatsCsv, programOf, unitOfCgroup } from './parse.ts';

// Recorded in a lab machine (ss from iproute2 6.1, coreutils 9.1, HAProxy 2.6).
const SS = `LISTEN 0      511      127.0.0.1:8080 0.0.0.0:* users:(("node",pid=13315,fd=18))
LISTEN 0      511        0.0.0.0:80   0.0.0.0:* users:(("nginx",pid=13329,fd=5),("nginx",pid=13328,fd=5),("nginx",pid=13325,fd=5))
LISTEN 0      128    10.213.5.11:22   0.0.0.0:* users:(("sshd",pid=7165,fd=3))
LISTEN 0      4096          [::]:5432      [::]:*
LISTEN 0      4096   127.0.0.1%lo:53   0.0.0.0:*
`;

test('ss: address, port and the processes holding each listening socket', () => {
  const l = parseSs(SS);
  assert.equal(l.length, 5);
  assert.deepEqual(l[1], {
    address: '0.0.0.0',
    port: 80,
    processes: [
      { name: 'nginx', pid: 13329 },
      { name: 'nginx', pid: 13328 },
      { name: 'nginx', pid: 13325 },
    ],
  });
  assert.deepEqual(l[3], { address: '[::]', port: 5432, processes: [] });
  assert.equal(l[4]!.address, '127.0.0.1');
  assert.ok(listensOn(l[1]!, '10.213.5.11') && listensOn(l[2]!, '10.213.5.11') && listensOn(l[3]!, '10.0.0.1'));
  assert.ok(!listensOn(l[0]!, '10.213.5.11') && !listensOn(l[2]!, '10.213.5.12'));
  assert.ok(isLoopback(l[0]!) && !isLoopback(l[1]!));
});

test('stat: owner, group, octal mode and type; a missing path is simply absent', () => {
  const s = parseStat(
    '/etc/vigil\troot\troot\t755\tdirectory\n/var/lib/vigil/postgresql/data\tpostgres\tpostgres\t700\tdirectory\n/etc/vigil/patroni.yml\tpostgres\tpostgres\t600\tregular file\n/run/vigil/x.sock\troot\troot\t777\tsocket\n',
  );
  assert.deepEqual(s[1], { path: '/var/lib/vigil/postgresql/data', user: 'postgres', group: 'postgres', mode: 0o700, type: 'directory' });
  assert.equal(s[2]!.type, 'file');
  assert.equal(s[2]!.mode, 0o600);
  assert.equal(s[3]!.type, 'other');
});

test('df: one entry per existing path, with its mount point', () => {
  assert.deepEqual(parseDf('File           Mounted on        1B-blocks       Avail\n/var/lib/vigil /var/lib/vigil 270553174016 85039751168\n'), [
    { path: '/var/lib/vigil', mount: '/var/lib/vigil', totalBytes: 270553174016, freeBytes: 85039751168 },
  ]);
});

test('sha256sum: digest by path, missing files left out', () => {
  const m = parseSha256sum('bc08ffbb8c8dcc4af51a7816a8afedbe2d4526787cfd9f3a49e26c208217d550  /usr/sbin/nginx\n');
  assert.equal(m.get('/usr/sbin/nginx'), 'bc08ffbb8c8dcc4af51a7816a8afedbe2d4526787cfd9f3a49e26c208217d550');
  assert.equal(m.size, 1);
});

test("the program that is a service's version: the script of an interpreter, else the executable", () => {
  assert.equal(programOf(['/usr/bin/node', '/opt/vigil/vigil.mjs', 'refapp', '--config', '/etc/x']), '/opt/vigil/vigil.mjs');
  assert.equal(programOf(['/usr/bin/java', '-Xmx2g', '-jar', '/opt/app/app.jar']), '/opt/app/app.jar');
  assert.equal(programOf(['/usr/bin/python3.11', '-u', '/opt/poller/main.py']), '/opt/poller/main.py');
  assert.equal(programOf(['/usr/sbin/nginx', '-c', '/etc/vigil/nginx.conf']), '/usr/sbin/nginx');
  assert.equal(programOf([]), null);
});

test('systemctl show ExecStart and /proc/PID/cgroup', () => {
  assert.deepEqual(
    parseExecStart('{ path=/usr/sbin/nginx ; argv[]=/usr/sbin/nginx -c /etc/vigil/nginx.conf -g daemon off; ; ignore_errors=no ; start_time=[n/a] }'),
    ['/usr/sbin/nginx', '-c', '/etc/vigil/nginx.conf', '-g', 'daemon', 'off;'],
  );
  assert.equal(parseExecStart(''), null);
  assert.equal(unitOfCgroup('0::/system.slice/nginx.service\n'), 'nginx.service');
  assert.equal(unitOfCgroup('0::/user.slice/user-0.slice/session-3.scope\n'), null);
});

test('HAProxy stats CSV: servers with admin and operational state and their checks, no frontends or backends', () => {
  const csv = `# pxname,svname,qcur,status,weight,check_status
stats,FRONTEND,,OPEN,,
app,app1,0,UP,1,L7OK
app,app2,0,MAINT,1,L7STS
app,app3,0,DOWN 1/2,1,L4CON
app,BACKEND,0,UP,1,
postgres,db1,0,DOWN,1,L7STS
postgres,db2,0,UP 1/2,1,
postgres,db3,0,DRAIN,1,L7OK
postgres,db4,0,no check,1,
`;
  assert.deepEqual(parseStatsCsv(csv), [
    { backend: 'app', server: 'app1', admin: 'ready', op: 'up', checks: 'enabled' },
    { backend: 'app', server: 'app2', admin: 'maint', op: 'down', checks: 'enabled' },
    { backend: 'app', server: 'app3', admin: 'ready', op: 'down', checks: 'enabled' },
    { backend: 'postgres', server: 'db1', admin: 'ready', op: 'down', checks: 'enabled' },
    { backend: 'postgres', server: 'db2', admin: 'ready', op: 'up', checks: 'enabled' },
    { backend: 'postgres', server: 'db3', admin: 'drain', op: 'up', checks: 'enabled' },
    { backend: 'postgres', server: 'db4', admin: 'ready', op: 'up', checks: 'none' },
  ]);
  assert.throws(() => parseStatsCsv('<html>'), /not HAProxy's stats CSV/);
});
