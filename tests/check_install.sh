#!/usr/bin/env bash
# `cmake --install` lays out what the daemon needs where it looks for it: the
# installed binary (into a DESTDIR, prefix /usr) finds its migrations and the
# dashboard from its own location, the unit names the installed binary, the
# example configuration parses, the systemd environment is honoured, and the
# installed daemon serves the dashboard and a migrated database.
# Usage: check_install.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
DESTDIR="$work/root" cmake --install "$build" --prefix /usr >"$work/install.log"
root=$work/root
fail=0
for f in usr/bin/alignd usr/share/alignd/migrations/0001_init.sql usr/share/alignd/web/index.html \
    usr/lib/systemd/system/alignd.service usr/lib/systemd/system/alignd.socket \
    etc/alignd/alignd.conf usr/share/doc/alignd/README.md; do
    [ -e "$root/$f" ] || { echo "not installed: /$f"; fail=1; }
done
grep -q '^ExecStart=/usr/bin/alignd serve$' "$root/usr/lib/systemd/system/alignd.service" \
    || { echo "alignd.service: ExecStart does not name /usr/bin/alignd"; fail=1; }
bin=$root/usr/bin/alignd
cfg=$("$bin" serve --check-config --config "$root/etc/alignd/alignd.conf" --state-dir "$work/state")
for key in migrations_dir web_dir; do
    grep -q "^$key = \"$root/usr/bin/../share/alignd/" <<<"$cfg" \
        || { echo "$key is not the installed one:"; grep "^$key" <<<"$cfg"; fail=1; }
done
# As systemd runs it: $STATE_DIRECTORY and $CONFIGURATION_DIRECTORY (the
# first of a colon-separated list), ALIGND_* over the file, flags over both.
mkdir -p "$work/conf"
printf 'workers = 3\nlog_level = debug\nmax_streams = 9\n' >"$work/conf/alignd.conf"
cfg=$(STATE_DIRECTORY="$work/sd:$work/other" CONFIGURATION_DIRECTORY="$work/conf" ALIGND_WORKERS=2 \
    "$bin" serve --check-config --max-streams 7)
for want in "state_dir = \"$work/sd\"" 'workers = 2' 'log_level = "debug"' 'max_streams = 7'; do
    grep -qF "$want" <<<"$cfg" || { echo "systemd environment: expected '$want' in:"; echo "$cfg"; fail=1; }
done

"$bin" serve --listen 127.0.0.1:0 --state-dir "$work/state" 2>"$work/daemon.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 200); do [ -s "$work/state/alignd.addr" ] && break; sleep 0.05; done
url="http://$(cat "$work/state/alignd.addr")"
curl -s --fail "$url/" | grep -q '<title>' || { echo "the installed daemon does not serve the dashboard"; fail=1; }
curl -s --fail "$url/readyz" | grep -q '"ready"' || { echo "the installed daemon is not ready"; fail=1; }
[ $fail -eq 0 ] && echo "install layout: ok"
exit $fail
