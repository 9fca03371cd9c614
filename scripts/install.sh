#!/bin/sh
# Install taosagent as a system service, as taOS's bootstrap installer calls
# it: non-interactive, idempotent (run it again: nothing changes), and
# reversible (--uninstall; --purge also removes the home).
#
#   scripts/install.sh [taosagent install flags]
#     --home /var/lib/taosagent  --listen 127.0.0.1:7077  --user root
#     --bin-dir /usr/local/bin   --unit-dir /etc/systemd/system
#     --uninstall [--purge]
#
# It installs the binary $TAOSAGENT_BIN if set, else builds this checkout's
# (Go needed), then runs `taosagent install`, which puts the binary in place,
# creates the home (0700, owned by --user), installs the pinned opencode from
# the npm registry (its integrity checked), creates the operator token, and
# writes, enables and starts the systemd unit.
set -eu
bin=${TAOSAGENT_BIN:-}
if [ -z "$bin" ]; then
	src=$(cd "$(dirname "$0")/.." && pwd)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	bin=$tmp/taosagent
	(cd "$src" && go build -trimpath -o "$bin" ./cmd/taosagent)
fi
"$bin" install "$@"
