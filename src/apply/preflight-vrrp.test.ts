import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterFixture } from '../testing/clusters.ts';
import { parseIpAddr, sameSubnet, vrrpInterfaceFindings } from './preflight-vrrp.ts';

const IP_ADDR = `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: ens18    inet 10.0.0.10/24 brd 10.0.0.255 scope global ens18\\       valid_lft forever preferred_lft forever
3: eth0@if12    inet 192.168.7.2/16 scope global eth0\\       valid_lft forever preferred_lft forever
`;

describe('preflight: the interface keepalived uses', () => {
  it('reads `ip -4 -o addr show`, veth peers (eth0@ifN) included', () => {
    assert.deepEqual(parseIpAddr(IP_ADDR), [
      { iface: 'lo', address: '127.0.0.1', prefixLength: 8 },
      { iface: 'ens18', address: '10.0.0.10', prefixLength: 24 },
      { iface: 'eth0', address: '192.168.7.2', prefixLength: 16 },
    ]);
  });

  it('subnets', () => {
    assert.ok(sameSubnet('10.0.0.100', '10.0.0.10', 24));
    assert.ok(!sameSubnet('10.0.1.100', '10.0.0.10', 24));
    assert.ok(sameSubnet('10.0.1.100', '10.0.0.10', 16));
    assert.ok(!sameSubnet('10.0.0.11', '10.0.0.10', 32));
  });

  const cluster = (vrrp: { interface?: string } = {}) => clusterFixture('distributed', { proxy: { virtualAddress: '10.0.0.100', vrrp } });
  const observer = (c = cluster()) => c.machines.find((m) => m.name === 'observer')!;

  it('names the interface that holds the address when the configured one does not exist', () => {
    const [f] = vrrpInterfaceFindings(cluster(), observer(), parseIpAddr(IP_ADDR.split('\n').slice(0, 2).join('\n')));
    assert.equal(f?.severity, 'fail');
    assert.match(f!.what, /proxy\.vrrp\.interface is eth0, but observer has no interface of that name .*its address 10\.0\.0\.10 is on ens18/);
    assert.match(f!.fix, /set proxy\.vrrp\.interface: ens18/);
  });

  it('an interface without the machine address fails; the address outside the subnet warns; all well: nothing', () => {
    const other = vrrpInterfaceFindings(cluster({ interface: 'eth0' }), observer(), parseIpAddr(IP_ADDR.replace('eth0@if12', 'eth0')));
    assert.match(other[0]!.what, /eth0 on observer does not hold the machine's address 10\.0\.0\.10 \(it is on ens18\)/);
    const c = cluster({ interface: 'ens18' });
    assert.deepEqual(vrrpInterfaceFindings(c, observer(c), parseIpAddr(IP_ADDR)), []);
    const far = clusterFixture('distributed', { proxy: { virtualAddress: '10.9.0.100', vrrp: { interface: 'ens18' } } });
    const [w] = vrrpInterfaceFindings(far, observer(far), parseIpAddr(IP_ADDR));
    assert.equal(w?.severity, 'warn');
    assert.match(w!.what, /outside observer's subnet on ens18 \(10\.0\.0\.10\/24\)/);
  });

  it('only proxy machines of a cluster with a floating address', () => {
    const plain = clusterFixture('distributed');
    assert.deepEqual(vrrpInterfaceFindings(plain, observer(plain), []), []);
    const c = cluster();
    assert.deepEqual(
      vrrpInterfaceFindings(
        c,
        c.machines.find((m) => m.name === 'app1')!,
        [],
      ),
      [],
    );
  });
});
