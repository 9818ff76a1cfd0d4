#!/bin/sh
# The unit files must pass `systemd-analyze verify` with no warning at all
# (verify exits 0 on unknown keys, so its output must be empty too), carry the
# settings the service relies on, and stay well hardened; the example
# configuration must pass `alignd serve --check-config`.
# Usage: check_systemd.sh SOURCE_DIR ALIGND_BINARY
set -u
src=$1 bin=$2
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed"; exit 1; }
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
sed "s|@ALIGND_BIN@|$bin|; s|@ALIGND_DOC_DIR@|/usr/share/doc/alignd|" \
    "$src/systemd/alignd.service.in" >"$dir/alignd.service"
cp "$src/systemd/alignd.socket" "$dir/"
out=$(cd "$dir" && systemd-analyze verify ./alignd.service ./alignd.socket 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "systemd-analyze verify (rc=$rc):"; echo "$out"; exit 1
fi
fail=0
for key in Type=notify WatchdogSec= Restart=on-failure DynamicUser=yes \
    StateDirectory=alignd ConfigurationDirectory=alignd ProtectSystem=strict \
    ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
    SystemCallFilter=@system-service MemoryDenyWriteExecute=yes \
    LockPersonality=yes CapabilityBoundingSet= TimeoutStopSec= LimitNOFILE=; do
    grep -q "^$key" "$dir/alignd.service" || { echo "missing: $key"; fail=1; }
done
# Exposure as systemd rates it (0 = locked down, 10 = exposed); the README
# reports the figure. Fail if hardening regresses past "OK".
exposure=$(cd "$dir" && systemd-analyze security --offline=yes ./alignd.service 2>/dev/null \
    | sed -n 's/.*Overall exposure level for alignd.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security exposure: ${exposure:-?}"
case "$exposure" in
    [0-1].*|2.[0-4]*) ;;
    *) echo "exposure ${exposure:-unknown} is above 2.4"; fail=1 ;;
esac
# The example configuration parses (every key known, every value valid).
if ! out=$("$bin" serve --check-config --config "$src/systemd/alignd.conf" 2>&1); then
    echo "systemd/alignd.conf: $out"; fail=1
fi
[ $fail -eq 0 ] && echo "systemd units: ok"
exit $fail
