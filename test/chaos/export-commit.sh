#!/usr/bin/env bash
# Exports a commit (default HEAD) of this repository to a directory and builds it there, so
# that `npm run chaos -- --keeper DIR` can test exactly that commit while the checkout is
# being edited. Usage: test/chaos/export-commit.sh DIR [COMMIT]
set -euo pipefail
dir=${1:?usage: export-commit.sh DIR [COMMIT]}
commit=${2:-HEAD}
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$dir"
mkdir -p "$dir"
git -C "$root" archive "$commit" | tar -x -C "$dir"
git -C "$root" rev-parse --short "$commit" > "$dir/COMMIT"
ln -s "$root/node_modules" "$dir/node_modules"
(cd "$dir" && node node_modules/typescript/bin/tsc -p tsconfig.build.json)
echo "built $(cat "$dir/COMMIT") in $dir"
