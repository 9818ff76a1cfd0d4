#!/bin/sh
# Fails when a layer reaches above itself (DESIGN.md, STYLE.md §1,
# ARCHITECTURE.md "Layers"): lib/ includes no header of api/ or daemon/ and
# no HTTP (libmicrohttpd, libcurl) or SQLite header, never prints to stdout
# and never exits; api/ includes no header of daemon/ (it reaches the state
# through api/backend.h), no SQLite, and holds no SQL.
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
check "lib/ includes a header of api/ or daemon/" --include='*.[ch]' \
    '#include *"(\.\./)*(api|daemon)/' "$root/lib"
check "api/ includes a header of daemon/" --include='*.[ch]' \
    '#include *"(\.\./)*daemon/' "$root/api"
check "lib/ prints to stdout or exits" --include='*.c' \
    '(^|[^a-z_])(printf|puts|exit) *\(' "$root/lib"
check "api/ includes SQLite" --include='*.[ch]' '#include *[<"]sqlite3\.h' "$root/api"
check "api/ holds SQL" --include='*.[ch]' \
    '"[^"]*\b(SELECT|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM|CREATE TABLE)\b' "$root/api"
[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
