#!/usr/bin/env bash
# The test command (README, CI): set-up, type check, lint, format check, then every test, unit and lab.
# Lab tests share one bridge and subnet, so test files run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -p tsconfig.json
npx eslint --max-warnings 0 .
# The formatter's layout (.prettierrc.json): `npm run format` rewrites, this only checks.
npm run -s format:check
mapfile -t files < <(find src test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
