#!/usr/bin/env bash
# Scores merges of the seven bench-quality adapters (../shared/bench-quality, see its README)
# on one split, one line of JSON per configuration.
#
#   scripts/bench_quality.sh SPLIT OUT.jsonl NAME "MERGE FLAGS" [NAME "MERGE FLAGS"]...
#
# e.g. scripts/bench_quality.sh val /tmp/val.jsonl tsv "--method tsv" cart "--method cart"
# Needs the scorer's venv (bash ../shared/bench-quality/setup.sh); BENCH_QUALITY points at the
# benchmark folder, LORA_LEGO at the binary (default: target/release/lora-lego).
set -euo pipefail
cd "$(dirname "$0")/.."
BQ="${BENCH_QUALITY:-../shared/bench-quality}"
PY="${BENCH_QUALITY_VENV:-$HOME/.cache/lora-lego-bench-quality/venv}/bin/python"
BIN="${LORA_LEGO:-target/release/lora-lego}"
split="$1"; out="$2"; shift 2
tasks=(sentiment topic question negation tense number voice)
inputs=()
for t in "${tasks[@]}"; do inputs+=("$BQ/adapters/$t"); done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
while [ $# -ge 2 ]; do
  name="$1"; flags="$2"; shift 2
  # shellcheck disable=SC2086
  "$BIN" merge "${inputs[@]}" -o "$work/$name" --quiet $flags
  scores="$("$PY" "$BQ/score.py" "$work/$name" --json --split "$split" \
    | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')"
  printf '{"name": "%s", "flags": "%s", "split": "%s", "result": %s}\n' \
    "$name" "$flags" "$split" "$scores" | tee -a "$out"
  rm -rf "${work:?}/$name"
done
