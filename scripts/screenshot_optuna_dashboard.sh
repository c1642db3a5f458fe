#!/usr/bin/env bash
# Screenshot Optuna's dashboard of a sweep's study in headless Chromium (Debian's `chromium` package and the
# test extra's optuna-dashboard):
#   scripts/screenshot_optuna_dashboard.sh SWEEP_DIR [OUT.png]
# The dashboard is served on 127.0.0.1 (a free port) for the screenshot only; background networking is off.
set -euo pipefail
sweep=$(cd "$1" && pwd)
out=${2:-$sweep/optuna_dashboard.png}
[ -f "$sweep/optuna.db" ] || { echo "error: $sweep/optuna.db does not exist (not a socialfeat sweep directory)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "error: no chromium on PATH (apt-get install chromium)" >&2; exit 2; }
command -v optuna-dashboard >/dev/null || { echo "error: no optuna-dashboard on PATH (pip install '.[test]')" >&2; exit 2; }
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
profile=$(mktemp -d)
optuna-dashboard --host 127.0.0.1 --port "$port" "sqlite:///$sweep/optuna.db" >"$profile/dashboard.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$profile"' EXIT
for _ in $(seq 1 60); do  # the server is up once its API answers
  python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/api/studies', timeout=1)" \
    2>/dev/null && break
  sleep 0.5
done
study=$(python -c "import json, urllib.request; print(json.load(urllib.request.urlopen(
  'http://127.0.0.1:$port/api/studies'))['study_summaries'][0]['study_id'])")
# the page draws its plots in JavaScript after loading the trials: give it virtual time to finish
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile/chromium" --hide-scrollbars \
  --virtual-time-budget=20000 --window-size=1400,1000 --screenshot="$out" \
  "http://127.0.0.1:$port/dashboard/studies/$study" 2>/dev/null
echo "$out"
