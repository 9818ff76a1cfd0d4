#!/bin/sh
# Fails when a layer reaches above itself (DESIGN.md, STYLE.md §1):
# lib/ includes no HTTP (libmicrohttpd, libcurl) or SQLite header, never
# prints to stdout and never
# exits; api/ includes no SQLite and holds no SQL.
root=${1:-.}
fail=0
check() { # message, grep args...
    msg=$1; shift
    if out=$(grep -rnE "$@"); then
        echo "layering: $msg"; echo "$out"; fail=1
    fi
}
check "lib/ includes an HTTP or SQLite header" --include='*.[ch]' \
    '#include *[<"](microhttpd|sqlite3|curl/curl)\.h' "$root/lib"
check "lib/ prints to stdout or exits" --include='*.c' \
    '(^|[^a-z_])(printf|puts|exit) *\(' "$root/lib"
check "api/ includes SQLite" --include='*.[ch]' '#include *[<"]sqlite3\.h' "$root/api"
check "api/ holds SQL" --include='*.[ch]' \
    '"[^"]*\b(SELECT|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM|CREATE TABLE)\b' "$root/api"
[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
