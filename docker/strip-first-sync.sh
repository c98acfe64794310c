#!/bin/bash
# Build-time helper: removes the rsync first sync and the cron sync job from the sidecar's
# secondary entrypoint, keeping every other step (admin user, ownership, TLS keys, ...) and the
# final `exec supervisord`. syncagent-entrypoint runs before it and execs what is left.
#
#   strip-first-sync.sh < /root/entrypoint.sh.with-rsync > /root/entrypoint.sh
#
# Removed: any while/until/for loop that mentions rsync (any case) (the `until rsync; do sleep 5;
# done` retry loop in its several shapes), `RSYNC_CMD=` lines and lines that write, chown or
# chmod /etc/cron.d/xroad-state-sync. The result must be valid bash with no rsync and no
# xroad-state-sync left outside comments; otherwise this fails and the image build stops,
# rather than shipping an entrypoint that still blocks on rsync.
set -euo pipefail

in=$(mktemp)
out=$(mktemp)
trap 'rm -f "$in" "$out"' EXIT
cat >"$in"

# POSIX awk (mawk in Ubuntu images): no \b, so words are delimited by explicit characters.
awk '
function count(line, re,    n, s) {
    n = 0
    s = " " line " "
    while (match(s, re)) { n++; s = substr(s, RSTART + RLENGTH - 1) }
    return n
}
function opens(line)  { return count(line, "[ \t;&|(](while|until|for)[ \t]") }
function closes(line) { return count(line, "[ \t;]done[ \t;)&|]") }
function flush() {
    if (buf ~ /[Rr][Ss][Yy][Nn][Cc]/)
        print "# (first sync from the primary: done by syncagent-entrypoint before this script)"
    else
        print buf
    buf = ""
    depth = 0
}
{
    comment = ($0 ~ /^[ \t]*#/)
    if (depth == 0) {
        if (comment) { print; next }
        if ($0 ~ /RSYNC_CMD=/ || $0 ~ /xroad-state-sync/) next
        depth = opens($0)
        if (depth == 0) { print; next }
        buf = $0
        depth -= closes($0)
        if (depth <= 0) flush()
        next
    }
    buf = buf "\n" $0
    if (!comment) depth += opens($0) - closes($0)
    if (depth <= 0) flush()
}
END {
    if (depth > 0) { print "strip-first-sync: a loop never ends" > "/dev/stderr"; exit 1 }
}
' "$in" >"$out"

if grep -n -v '^[[:space:]]*#' "$out" | grep -i -e rsync -e xroad-state-sync >&2; then
    echo "strip-first-sync: the lines above still sync with rsync: this entrypoint has a shape" \
        "it does not know; set SYNCAGENT_EXEC to a start command without them" >&2
    exit 1
fi
if ! bash -n "$out"; then
    echo "strip-first-sync: the result is not valid bash" >&2
    exit 1
fi
cat "$out"
