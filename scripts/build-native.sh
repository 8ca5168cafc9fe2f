#!/usr/bin/env bash
# npm's install step: builds the addon against the running Node's own headers, so node-gyp
# downloads nothing (without --nodedir it would fetch a header tarball).
set -euo pipefail
prefix=$(dirname "$(dirname "$(command -v node)")")
if [[ -f "$prefix/include/node/node_api.h" ]]; then
  exec node-gyp rebuild --nodedir="$prefix"
fi
echo "build-native: no Node headers under $prefix/include/node; node-gyp will look for them itself" >&2
exec node-gyp rebuild
