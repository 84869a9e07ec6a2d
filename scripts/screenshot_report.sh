#!/usr/bin/env bash
# Render a study's report.html to a PNG with headless Chromium, to check that it displays in a real browser.
#
#   scripts/screenshot_report.sh studies/optimizers/report.html [out.png] [height]
#
# Writes out.png (default: report.png beside the report) at 1280 x height pixels (default 3000).
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1" ]]; then
    echo "usage: $0 REPORT_HTML [OUT_PNG] [HEIGHT]  (REPORT_HTML must exist)" >&2
    exit 2
fi
report="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
out="${2:-$(dirname "$report")/report.png}"
height="${3:-3000}"

browser=""
for candidate in /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
    if [[ -x "$candidate" ]]; then
        browser="$candidate"
        break
    fi
done
if [[ -z "$browser" ]]; then
    echo "chromium is not installed: install it (Debian/Ubuntu: apt-get install -y chromium) and run again" >&2
    exit 1
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --screenshot="$out" --window-size="1280,$height" \
    "file://$report" >/dev/null 2>&1
if [[ ! -s "$out" ]]; then
    echo "chromium wrote no screenshot to $out" >&2
    exit 1
fi
echo "wrote $out"
