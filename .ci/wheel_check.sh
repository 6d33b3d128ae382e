#!/usr/bin/env bash
# The bare install, as a user gets it from an index: build the wheel, install it with no
# extras into a fresh virtual environment, and process a synthetic photo with it (the
# shipped demo models, a fresh SQLite database). Run after `make test` (`make wheel-check`).
# pip uses the configured index (or --find-links) for the dependencies; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PYTHON="${PYTHON:-python3}"  # has pip; builds the wheel (hatchling, isolated)
BASE_PYTHON="$("$BUILD_PYTHON" -c 'import sys; print(sys._base_executable)')"

work="$(mktemp -d "${TMPDIR:-/tmp}/cervixbatch-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

"$BUILD_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" .
wheel="$(ls "$work"/dist/cervixbatch-*.whl)"
echo "wheel-check: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))" >&2

"$BASE_PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
echo "wheel-check: installed with no extras in $((SECONDS - started)) s" >&2

cd "$work"
export TF_CPP_MIN_LOG_LEVEL=2
venv/bin/cervixbatchd --help >/dev/null
venv/bin/cervixbatch synth --count 1 --out synth --seed 3 --size 800x600 2>/dev/null
cat > config.toml <<'TOML'
[paths]
inbox = "inbox"
outbox = "outbox"

[database]
url = "sqlite:///state/cervixbatch.db"

[logging]
format = "json"
TOML
venv/bin/cervixbatch --config config.toml process synth/images 2>process.log \
  || { cat process.log >&2; exit 1; }
venv/bin/cervixbatch --config config.toml report --format json >report.json
venv/bin/python - <<'PY'
import json
from pathlib import Path

report = json.loads(Path("report.json").read_text())
assert report["summary"]["done"] == 1 == report["summary"]["total"], report["summary"]
(result,) = report["items"][0]["results"]
for name in ("cervix_mask", "lesion_mask", "overlay"):
    assert Path(result["outputs"][name]).is_file(), name
print("wheel-check: the bare install processed a synthetic photo:", result["outputs"]["overlay"])
PY
echo "wheel-check: done in $((SECONDS - started)) s" >&2
