#!/bin/sh
# Make docs/report.png, the README's picture of a run report.
#
#   docs/make_screenshot.sh runs/default-20260701-120000/report.html   # a real run's report
#   docs/make_screenshot.sh                                            # the report tests' hand-made metrics
#
# Needs Debian's chromium (apt-get install -y chromium). The shot is the top 2,400 px of the page
# at 1,280 px wide: the headline cards and the first plots.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/docs/report.png"
command -v chromium >/dev/null || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }

if [ $# -ge 1 ]; then
    report="$(realpath "$1")"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    report="$tmp/report.html"
    (cd "$root" && .venv/bin/python -c "
import sys
from pathlib import Path
from gridloom.scenario.report import write_report
from tests.scenario.test_report import sample_metrics
write_report(sample_metrics(), Path(sys.argv[1]))
" "$report")
fi

# --no-sandbox: chromium runs as root in the development containers
chromium --headless --disable-gpu --no-sandbox --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=1280,2400 --screenshot="$out" "file://$report" 2>/dev/null
echo "wrote $out ($(wc -c <"$out") bytes) from $report"
