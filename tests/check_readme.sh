#!/usr/bin/env bash
# The README's curl walk-through, run as written: the ```sh blocks between
# <!-- walkthrough:begin --> and <!-- walkthrough:end -->, in one shell with
# -e, against the daemon tests/with_daemon.sh starts ($A). A failed call
# (curl --fail-with-body), a failed job or any non-zero command fails it.
# Usage: check_readme.sh README.md
set -euo pipefail
awk '/<!-- walkthrough:begin -->/ {on = 1; next} /<!-- walkthrough:end -->/ {on = 0}
     on && /^```sh$/ {code = 1; next} on && /^```$/ {code = 0; next} code' "$1" >walkthrough.sh
[ -s walkthrough.sh ] || { echo "$1: no walk-through blocks found"; exit 1; }
bash -euo pipefail walkthrough.sh
echo "README walk-through: ok ($(grep -c 'post /v1/fine_tuning/jobs ' walkthrough.sh) job submissions)"
