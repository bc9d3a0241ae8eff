#!/usr/bin/env bash
# Check the unit files with `systemd-analyze verify`, against the freshly built binary
# (verify insists that ExecStart= exists). Usage: systemd/verify.sh path/to/schedctl
set -euo pipefail
bin=$(realpath "${1:?usage: systemd/verify.sh path/to/schedctl}")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$here"/*.service; do
    name=$(basename "$unit")
    sed "s|/usr/local/bin/schedctl|$bin|g" "$unit" > "$tmp/$name"
    # A template is checked as an instance too (the instance name is the HTTP port).
    case "$name" in *@.service) cp "$tmp/$name" "$tmp/${name%@.service}@9187.service" ;; esac
done
out=$(cd "$tmp" && systemd-analyze verify ./*.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
    echo "$out"
    exit 1
fi
echo "systemd units verified: $(cd "$tmp" && ls)"
