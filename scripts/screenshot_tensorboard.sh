#!/usr/bin/env bash
# Screenshot the HParams view of a sweep's TensorBoard in headless Chromium (Debian's `chromium` package and
# the dashboards extra's tensorboard):
#   scripts/screenshot_tensorboard.sh SWEEP_DIR [OUT.png]
# TensorBoard is served on 127.0.0.1 (a free port) for the screenshot only; background networking is off.
set -euo pipefail
sweep=$(cd "$1" && pwd)
out=${2:-$sweep/tensorboard_hparams.png}
[ -d "$sweep/tensorboard" ] || { echo "error: $sweep/tensorboard does not exist (not a socialfeat sweep directory)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "error: no chromium on PATH (apt-get install chromium)" >&2; exit 2; }
command -v tensorboard >/dev/null || { echo "error: no tensorboard on PATH (pip install '.[dashboards]')" >&2; exit 2; }
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
profile=$(mktemp -d)
tensorboard --logdir "$sweep/tensorboard" --host 127.0.0.1 --port "$port" >"$profile/tensorboard.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$profile"' EXIT
for _ in $(seq 1 120); do  # the server is up once its runs answer
  python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/data/runs', timeout=1)" \
    2>/dev/null && break
  sleep 0.5
done
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile/chromium" --hide-scrollbars \
  --virtual-time-budget=20000 --window-size=1400,900 --screenshot="$out" \
  "http://127.0.0.1:$port/#hparams" 2>/dev/null
echo "$out"
