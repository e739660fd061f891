#!/usr/bin/env bash
# Checks the API contract, offline (no Buf Schema Registry):
#   1. buf lint                 proto/ follows the STANDARD rules of buf.yaml
#   2. buf breaking             proto/ is wire- and source-compatible (FILE rules) with
#                               proto/baseline.binpb, the contract as last released
#   3. gen/ is reproducible     `npm run gen` in a scratch copy of the repository
#                               produces exactly the committed gen/
# The working tree is never modified. Needs node_modules (npm ci).
# Usage: bash scripts/check-contract.sh        (npm run check:contract)
# Exit: 0 all checks pass, 1 a check failed (the message says which and what to do).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BUF="$REPO/node_modules/.bin/buf"
BASELINE=proto/baseline.binpb

fail() {
  printf '\ncheck-contract: FAILED: %s\n' "$*" >&2
  exit 1
}

[ -x "$BUF" ] || fail "$BUF is missing: run npm ci first"
[ -f "$BASELINE" ] || fail "$BASELINE is missing: it is the committed image of the last released contract (see README, \"Changing the contract\")"

echo "== buf lint (buf.yaml: STANDARD)"
"$BUF" lint || fail "buf lint found the problems listed above in proto/; fix the .proto files (rules: https://buf.build/docs/lint/rules)"

echo "== buf breaking --against $BASELINE (buf.yaml: FILE)"
"$BUF" breaking --against "$BASELINE" ||
  fail "proto/ breaks the released contract $BASELINE (changes listed above). Restore compatibility (add fields/RPCs, reserve removed numbers and names), or make a deliberate versioned change as README \"Changing the contract\" explains"

echo "== gen/ is what npm run gen produces"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/runc-shim-contract.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
# A copy of everything gen reads (all but the outputs and the heavy or irrelevant
# dirs); node_modules is linked, not copied, since buf and protoc-gen-ts_proto run from it.
for entry in "$REPO"/* "$REPO"/.[!.]*; do
  case "$(basename "$entry")" in
    node_modules | gen | dist | coverage | .git | "*" | ".[!.]*") continue ;;
  esac
  cp -a "$entry" "$SCRATCH/"
done
ln -s "$REPO/node_modules" "$SCRATCH/node_modules"
if ! (cd "$SCRATCH" && npm run --silent gen) >"$SCRATCH/gen.log" 2>&1; then
  cat "$SCRATCH/gen.log" >&2
  fail "npm run gen failed in a scratch copy (output above)"
fi
if ! diff -rq gen "$SCRATCH/gen" >"$SCRATCH/diff.txt"; then
  sed "s|$SCRATCH/|regenerated |g" "$SCRATCH/diff.txt" >&2
  diff -ru gen "$SCRATCH/gen" 2>/dev/null | sed "s|$SCRATCH/|regenerated |g" | head -n 60 >&2 || true
  fail "gen/ is stale: run npm run gen and commit"
fi

echo "contract OK: lint clean, compatible with $BASELINE, gen/ up to date"
