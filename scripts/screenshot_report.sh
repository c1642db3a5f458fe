#!/usr/bin/env bash
# Screenshot a run's report.html in headless Chromium (Debian's `chromium` package):
#   scripts/screenshot_report.sh RUN_DIR [OUT.png] [HEIGHT]   (RUN_DIR: a run, or a sweep's directory)
# Offline by design: the report has no external resources, and background networking is off.
set -euo pipefail
run_dir=$(cd "$1" && pwd)
out=${2:-$run_dir/report_screenshot.png}
height=${3:-4000}
[ -f "$run_dir/report.html" ] || { echo "error: $run_dir/report.html does not exist (run: socialfeat report $1)" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "error: no chromium on PATH (apt-get install chromium)" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --window-size=1400,$height --screenshot="$out" "file://$run_dir/report.html" 2>/dev/null
echo "$out"
