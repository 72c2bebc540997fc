#!/usr/bin/env bash
# Installs everything Vigil needs on this machine (Debian or Ubuntu, as root): the components the
# lab runs and the npm packages. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/setup.sh: run as root (the lab creates network namespaces and installs Debian packages)" >&2
  exit 1
fi

node_ok() { command -v node >/dev/null && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; }
if ! node_ok; then
  echo "scripts/setup.sh: Node.js >= 20.19 is required (found: $(node --version 2>/dev/null || echo none)); install it from your distribution or nodesource and run again" >&2
  exit 1
fi

# mmdebstrap and dpkg-dev: the lab machines' root filesystems and package mirror (src/lab/rootfs.ts);
# systemd-container: systemd-nspawn boots the bare lab machines (src/lab/boot.ts); keepalived: the
# render tests run `keepalived --config-test` (src/render/keepalived.test.ts); iptables and python3:
# the lab's latency fault (iptables-legacy's NFQUEUE target and src/lab/nfq-delay.py; src/lab/net.ts);
# prometheus: its `promtool` checks the alert rules and the daemons' /metrics in the tests (docs/metrics.md);
# chromium: the dashboard's browser test drives it with playwright-core (docs/dashboard.md; never a downloaded browser).
packages=(postgresql patroni etcd-server etcd-client haproxy socat keepalived rsync openssh-server openssh-client nginx iproute2 nftables iptables python3 util-linux openssl lsyncd sudo mmdebstrap dpkg-dev systemd-container prometheus chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' own services are not used: Vigil runs the components from its generated configs.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Every lab machine's systemd, journald and agent take inotify instances from root's share
# (about 7 to 10 a machine); the suite runs two labs of up to 7 machines at once, near Debian's
# default of 128. Raised for this host, now and at boot (docs/lab.md, "Several labs at once").
want_inotify=1024
if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt "$want_inotify" ]; then
  if sysctl -q -w fs.inotify.max_user_instances="$want_inotify"; then
    echo "fs.inotify.max_user_instances = $want_inotify" >/etc/sysctl.d/60-vigil-lab.conf
    echo "setup: fs.inotify.max_user_instances raised to $want_inotify for the lab's machines"
  else
    echo "setup: warning: could not raise fs.inotify.max_user_instances (now $(cat /proc/sys/fs/inotify/max_user_instances)); lab machines may fail to boot when several labs run" >&2
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.vigil-lock; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.vigil-lock
fi
# The lab machines' root filesystems: trixie (PostgreSQL 17, Patroni 4) and bookworm (PostgreSQL 15,
# Patroni 3.0), built once from Debian's archive and rebuilt only when their package lists change.
for release in trixie bookworm; do
  npx --no-install vigil lab rootfs --release "$release"
done
echo "setup: ready"
