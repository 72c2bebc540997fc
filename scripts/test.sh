#!/usr/bin/env bash
# The test command (README, CI): set-up, type check, lint, format check, then every test, unit and lab.
# Two test files run at once. A lab test file takes one of two labs of its own (test/lab/slot.ts:
# lab ids VIGIL_LAB_ID, default 0, and the next one), so two lab files never share a bridge,
# subnet or machine; unit test files take none.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -p tsconfig.json
npx eslint --max-warnings 0 .
# The formatter's layout (.prettierrc.json): `npm run format` rewrites, this only checks.
npm run -s format:check
base="${VIGIL_LAB_ID:-0}"
export VIGIL_TEST_LAB_SLOTS="${base},$(((base + 1) % 10))"
mapfile -t files < <(find src test -name '*.test.ts' | sort)
exec node --import tsx --import ./test/lab/slot.ts --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
