#!/usr/bin/env bash
# The main job on the built-in lab: set-up, bare Debian 13 machines (systemd, sshd, apt), then what
# an administrator runs: `vigil init` (cluster file, CA, pinned host keys, admin key) and
# `vigil apply` (PostgreSQL 17, Patroni 4, etcd, HAProxy, nginx installed from the lab's mirror,
# every unit started under the machines' systemd, the cluster verified), and a ticket created and
# read back through the proxy. The lab stays up afterwards; `npx vigil lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
topology="${1:-distributed}"
id="${VIGIL_LAB_ID:-0}"
dir="${VIGIL_LAB_DIR:-/var/lib/vigil-lab$([ "$id" = 0 ] || echo "$id")}"
npx vigil lab down >/dev/null
npx vigil lab up --bare --topology "$topology"
npx vigil init --answers "$dir/answers.yaml" --accept-host-keys -d "$dir" >/dev/null
echo "init: cluster file, secrets, cluster CA, pinned host keys and the admin key in $dir"
npx vigil apply -c "$dir/vigil.yaml" | grep -E '^ *[0-9.]+s  (connect|preflight|apply):|packages: install'
npx vigil lab status
npx vigil lab demo
