#!/usr/bin/env bash
# The main job on the built-in lab: set-up, a `distributed` cluster in namespaces, and a ticket
# created and read back through the proxy. The lab stays up afterwards; `npx vigil lab down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
topology="${1:-distributed}"
npx vigil lab down >/dev/null
npx vigil lab up --topology "$topology"
npx vigil lab status
npx vigil lab demo
