#!/usr/bin/env bash
# npm run lint: ESLint (eslint.config.js), Prettier (.prettierrc.json) and clang-format
# (.clang-format) in check mode, one line per finding. All three run even when one fails (ESLint
# and Prettier side by side); the exit status is 1 when any found something. `npm run format`
# rewrites what the two formatters report.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
prettier_out=$(mktemp)
trap 'rm -f "$prettier_out"' EXIT

# Prettier's cache (node_modules/.cache/prettier) skips files already formatted and unchanged.
npx prettier --check --cache --cache-strategy content --log-level warn '{src,test,bench,scripts,fuzz}/**/*.{ts,js}' '*.{ts,js}' >"$prettier_out" 2>&1 &
prettier_pid=$!

# No --cache for ESLint: its cache is per file, and a type-aware finding can change with another file.
npx eslint --format ./scripts/eslint-formatter.js . || status=1

wait "$prettier_pid" || status=1
cat "$prettier_out"

if ! command -v clang-format >/dev/null; then
  echo "lint: clang-format is missing: bash scripts/setup-qemu.sh installs it (Debian package clang-format)" >&2
  status=1
elif ! out=$(clang-format --dry-run -Werror native/*.cc native/*.h 2>&1); then
  # Only clang-format's `file:line:col: error: ...` lines, not the source and caret under each.
  grep ': error: ' <<<"$out" || printf '%s\n' "$out"
  status=1
fi

exit "$status"
