#!/bin/sh
# Fails when a function of lib/ is longer than 150 lines (issue "one run
# skeleton": a long function is split into named parts). A function is counted
# from the first line of its signature to its closing brace, as `ctags
# --fields=+ne` counts it (the awk below agrees with it on every function of
# lib/; it is awk so that the check needs nothing beyond POSIX tools). It
# relies on the layout of STYLE.md: a definition starts at column 0 and its
# body closes with a `}` alone at column 0; tables (`... = {`) and type
# definitions are not functions and are not counted.
root=${1:-.}
max=150

# "file:line name length" for every function body of the files given.
lengths() {
    awk '
    FNR == 1 { sig = 0; inb = 0 }
    { gsub(/\/\*.*\*\//, ""); sub(/[ \t]\/\/.*$/, "") }
    !inb && /^[A-Za-z_]/ && !/^(typedef|struct|enum|union)[ \t]/ { if (!sig) { sig = FNR; sigl = $0 } }
    !inb && sig && /\}[ \t;]*$/ { sig = 0; next }
    !inb && sig && /;[ \t]*$/ { sig = 0; next }
    !inb && sig && /\{[ \t]*$/ {
        if (sigl ~ /\(/ && sigl !~ /=/) { inb = 1; start = sig } else sig = 0
        next
    }
    inb && /^\}[ \t]*$/ {
        name = sigl; sub(/\(.*/, "", name); sub(/.*[ *]/, "", name)
        print FILENAME ":" start " " name " " FNR - start + 1
        inb = 0; sig = 0
    }' "$@"
}

# The check must be able to fail: a body of max+1 lines is found, one of max
# lines and a long table are not.
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
{
    echo "static int t[] = {"; i=0; while [ $i -lt 200 ]; do echo "    $i,"; i=$((i + 1)); done; echo "};"
    for n in $max $((max + 1)); do
        echo "static int f$n(int a,"; echo "               int b) {"
        i=4; while [ $i -lt "$n" ]; do echo "    a += b; /* { */"; i=$((i + 1)); done
        echo "    return a;"; echo "}"
    done
} > "$tmp/sample.c"
self=$(lengths "$tmp/sample.c" | awk -v m=$max '$3 > m { print $2 }')
if [ "$self" != "f$((max + 1))" ]; then
    echo "function_length: the check itself is wrong (found '$self', expected f$((max + 1)))"
    exit 1
fi

files=$(cd "$root" && find lib -name '*.[ch]' | sort)
long=$(cd "$root" && lengths $files | awk -v m=$max '$3 > m')
if [ -n "$long" ]; then
    echo "function_length: functions of lib/ over $max lines (split them into named parts):"
    echo "$long"
    exit 1
fi
echo "function_length: ok"
