#!/usr/bin/env bash
# readme-vars.sh check|write <build dir>: README.md's variable tables against the binaries.
# Each table sits between "<!-- vars:<binary> -->" and "<!-- /vars -->" and is made from that
# binary's --help (the config table every binary prints). `check` (CTest readme_vars) fails when
# a table differs from what --help says or a built process binary has no table; `write`
# regenerates the tables in place.
set -euo pipefail
mode=$1
build=$(readlink -f "$2")
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
readme=$repo/README.md

bin_path() {
    case $1 in
    kooisv-gateway | kooisvctl) printf '%s\n' "$build/gateway/$1" ;;
    kooisv-emulator) printf '%s\n' "$build/tests/emulator/$1" ;;
    *) printf '%s\n' "$build/services/${1#kooisv-}/$1" ;;
    esac
}

# Markdown table from config_load's --help: "  NAME (or NAME_FILE)" then indented help lines
# ending in "[default: x]" or "[required]".
help_table() {
    "$(bin_path "$1")" --help | awk '
        function flush() {
            if (name == "") return
            d = desc; def = ""
            if (match(d, /\[required\] *$/)) { def = "required"; d = substr(d, 1, RSTART - 1) }
            else if (match(d, /\[default: .*\] *$/)) {
                v = substr(d, RSTART + 10, RLENGTH - 11); sub(/\] *$/, "", v)
                def = (v == "") ? "(empty)" : "`" v "`"; d = substr(d, 1, RSTART - 1)
            }
            sub(/ +$/, "", d); gsub(/\|/, "\\|", d); gsub(/</, "\\&lt;", d); gsub(/>/, "\\&gt;", d)
            printf "| `%s` | %s | %s | %s |\n", name, def, (file == "" ? "" : "`" file "`"), d
            name = ""
        }
        BEGIN { print "| variable | default | secret: file twin | meaning |"; print "|---|---|---|---|" }
        /^  [A-Z][A-Z0-9_]+( \(or [A-Z0-9_]+\))? *$/ {
            flush(); name = $1; file = ""; desc = ""
            if ($2 == "(or") { file = $3; sub(/\)$/, "", file) }
            next
        }
        /^      / && name != "" { line = $0; sub(/^ +/, "", line); desc = (desc == "" ? line : desc " " line); next }
        { flush() }
        END { flush() }'
}

# README with every table replaced by the binary's current one.
rendered() {
    local line bin in_table=0 keep=0
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^\<!--\ vars:([a-z-]+)\ --\>$ ]]; then
            bin=${BASH_REMATCH[1]}
            printf '%s\n' "$line"
            in_table=1
            keep=0
            if [[ -x $(bin_path "$bin") ]]; then
                help_table "$bin"
            else
                # check fails on it (the diff shows nothing, so say it); write keeps the old table
                echo "readme-vars: $(bin_path "$bin") is not built" >&2
                [[ $mode == write ]] || return 1
                keep=1
            fi
            continue
        fi
        if ((in_table)); then
            if [[ $line != '<!-- /vars -->' ]]; then
                ((keep)) && printf '%s\n' "$line"
                continue
            fi
            in_table=0
        fi
        printf '%s\n' "$line"
    done <"$readme"
}

# Every process binary that is built must have its table.
missing=()
for b in kooisv-gateway kooisv-order kooisv-tenant kooisv-app kooisv-audit \
    kooisv-emulator; do
    if [[ -x $(bin_path "$b") ]] && ! grep -qxF "<!-- vars:$b -->" "$readme"; then
        missing+=("$b")
    fi
done
if ((${#missing[@]})); then
    echo "readme-vars: README.md has no variable table for: ${missing[*]} (add a" \
        "\"<!-- vars:NAME -->\" \"<!-- /vars -->\" pair, then run: $0 write <build dir>)" >&2
    [[ $mode == check ]] && exit 1
fi

new=$(rendered) || exit 1
case $mode in
write)
    printf '%s\n' "$new" >"$readme"
    ;;
check)
    if ! diff -u "$readme" <(printf '%s\n' "$new") >&2; then
        echo "readme-vars: README.md's variable tables differ from the binaries' --help (above);" \
            "run tests/harness/readme-vars.sh write <build dir>" >&2
        exit 1
    fi
    echo "readme-vars: README.md agrees with every binary's --help"
    ;;
*)
    echo "usage: readme-vars.sh check|write <build dir>" >&2
    exit 2
    ;;
esac
