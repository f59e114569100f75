#!/usr/bin/env bash
# Drives the explorer as a real process in a tmux terminal: opens the demo, changes k,
# exports, quits, and checks that the terminal is left clean. Exits non-zero on failure.
# Usage: scripts/tui_smoke.sh        (builds target/release/lora-lego only if it is missing)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/lora-lego"
if [ ! -x "$BIN" ]; then
    cargo build --release
fi
command -v tmux >/dev/null || { echo "FAIL: tmux is not installed"; exit 1; }

TMP=$(mktemp -d)
SESSION="lego-smoke-$$"
cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    echo "----- pane -----"
    tmux capture-pane -p -t "$SESSION" 2>/dev/null || true
    exit 1
}

# Waits until the pane shows text matching the extended regex $1 (at most $2 seconds).
wait_for() {
    local pattern=$1 timeout=${2:-20} i=0
    while [ "$i" -lt $((timeout * 10)) ]; do
        if tmux capture-pane -p -t "$SESSION" | grep -Eq -- "$pattern"; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    fail "timed out waiting for /$pattern/"
}

key() {
    tmux send-keys -t "$SESSION" "$@"
    # Keys sent back to back can merge into one escape sequence (Esc + x reads as Alt-x).
    sleep 0.3
}

# The explorer runs in a shell that reports its exit status and the terminal mode after it.
tmux new-session -d -s "$SESSION" -x 160 -y 48 \
    "cd '$TMP' && LORA_LEGO_DATA_DIR='$TMP/data' bash -c '\"$BIN\"; echo EXITED \$?; stty -a | grep -Eo \"(^| )-?icanon\" | sed \"s/^ /MODE /\"; sleep 600'"

wait_for "Modules 36/36" 30
wait_for "lego · up to date" 30
echo "== main screen =="
tmux capture-pane -p -t "$SESSION" | tee "$TMP/main.txt"
[ "$(tmux display -p -t "$SESSION" '#{alternate_on}')" = 1 ] || fail "not on the alternate screen"

key +
wait_for "k \(all modules\) +9" 10
wait_for "lego · up to date" 30
wait_for "dist [0-9.]+ k9" 10

key e
wait_for "Export — Enter writes" 10
key C-u
tmux send-keys -t "$SESSION" -l "$TMP/out"
sleep 0.3
key Enter
wait_for "Export — done" 60
echo "== export summary =="
tmux capture-pane -p -t "$SESSION" | grep -E "written|size|ranks|reproduce|lora-lego merge|--" || true
[ -f "$TMP/out/adapter_model.safetensors" ] || fail "no adapter_model.safetensors written"
[ -f "$TMP/out/adapter_config.json" ] || fail "no adapter_config.json written"

# The same merge from the command line writes the same bytes.
mapfile -t DEMO < <(ls -d "$ROOT"/assets/demo/*/ | sed 's:/$::' | sort)
"$BIN" merge "${DEMO[@]}" -o "$TMP/cli" -k 9 --quiet
cmp "$TMP/out/adapter_model.safetensors" "$TMP/cli/adapter_model.safetensors" || fail "weights differ from lora-lego merge"
cmp "$TMP/out/adapter_config.json" "$TMP/cli/adapter_config.json" || fail "config differs from lora-lego merge"

key Enter
key q
wait_for "EXITED 0" 10
wait_for "MODE icanon" 5
[ "$(tmux display -p -t "$SESSION" '#{alternate_on}')" = 0 ] || fail "still on the alternate screen"
[ "$(tmux display -p -t "$SESSION" '#{mouse_any_flag}')" = 0 ] || fail "mouse capture left on"
[ -f "$TMP/data/history.json" ] || fail "history not saved"
grep -q '"k": 9' "$TMP/data/history.json" || fail "history lacks the last k"
echo "== after quitting =="
tmux capture-pane -p -t "$SESSION" | grep -v '^$'
echo "OK: opened the demo, changed k to 9, exported (equal to lora-lego merge), quit cleanly"
