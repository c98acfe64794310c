#!/bin/bash
# Entrypoint of the syncagent secondary image. It replaces the sidecar's blocking first sync
# (`while :; do su -c "$RSYNC_CMD" xroad ... && break; sleep 5; done`, retried forever) with
# `syncagent once` under a time budget, then execs the image's normal start (the base's
# entrypoint without its rsync steps, which execs supervisord, which runs `syncagent run` as
# xroad-sync).
#
# Started as root (as the image is), it first makes the sync target belong to the user the sync
# runs as, as the base entrypoint's `chown -R xroad:xroad /etc/xroad` does before its rsync:
# otherwise a directory the base image or a fresh volume left root-owned makes every first-sync
# attempt fail ("Permission denied") for the whole budget.
#
# Exit codes of `syncagent once` and what happens:
#   0  applied / already current          -> start
#   1  transport or remote failure        -> retry until the budget is spent, then start not-ready
#   3  rejected by validation             -> start not-ready (the daemon keeps the last good tree
#                                            and retries)
#   4  primary not initialized            -> start not-ready (the daemon keeps trying)
#   2  bad configuration                  -> stop with a message: retrying cannot fix it
# "Not ready" is the daemon's business: its /readyz answers 503 until a sync succeeds, so the
# pod is visible (logs, /status, metrics) instead of being killed in a restart loop.
#
# Environment (all optional):
#   SYNCAGENT_FIRST_SYNC_BUDGET  seconds for the first sync, default 120; 0 = a single try. The
#                                last try may run 35 s past it: keep budget + 35 s + start-up
#                                well under the startupProbe's 300 s (docker/kubernetes/).
#   SYNCAGENT_FIRST_SYNC_RETRY   seconds between tries, default 5, plus up to half that again
#                                as jitter so secondaries restarted together spread out
#   SYNCAGENT_BIN                the agent, default /opt/syncagent/bin/syncagent
#   SYNCAGENT_RUN_AS             user for the first sync when started as root, default xroad;
#                                empty = the current user (and no ownership step)
#   SYNCAGENT_SYNC_TARGET        the agent's target (default /etc/xroad): the tree made
#                                SYNCAGENT_RUN_AS's before the first sync
#   SYNCAGENT_EXEC               the command started afterwards (word-split), default
#                                /root/entrypoint.sh (the image's own entrypoint, its rsync
#                                steps removed at build time). Arguments given to this script
#                                take precedence over it.
set -euo pipefail

SYNCAGENT_BIN=${SYNCAGENT_BIN:-/opt/syncagent/bin/syncagent}
SYNCAGENT_EXEC=${SYNCAGENT_EXEC:-/root/entrypoint.sh}
SYNCAGENT_RUN_AS=${SYNCAGENT_RUN_AS-xroad}
budget=${SYNCAGENT_FIRST_SYNC_BUDGET:-120}
retry=${SYNCAGENT_FIRST_SYNC_RETRY:-5}

log() { echo "$(date --utc -Iseconds) INFO [syncagent-entrypoint] $*"; }
warn() { echo "$(date --utc -Iseconds) WARN [syncagent-entrypoint] $*" >&2; }
# die EXIT-CODE MESSAGE...
die() {
    local code=$1
    shift
    echo "$(date --utc -Iseconds) ERROR [syncagent-entrypoint] $*" >&2
    exit "$code"
}

for v in budget retry; do
    [[ ${!v} =~ ^[0-9]+$ ]] ||
        die 2 "SYNCAGENT_FIRST_SYNC_${v^^} must be whole seconds, got '${!v}'"
done

# Run the agent as the unprivileged user when we are root (as the old `su ... xroad` did).
as_user=()
if [[ $(id -u) == 0 && -n $SYNCAGENT_RUN_AS ]]; then
    home=$(getent passwd "$SYNCAGENT_RUN_AS" | cut -d: -f6) ||
        die 2 "SYNCAGENT_RUN_AS: no such user '$SYNCAGENT_RUN_AS'"
    as_user=(setpriv "--reuid=$SYNCAGENT_RUN_AS" "--regid=$SYNCAGENT_RUN_AS" --init-groups
        env -- "HOME=$home")
    target=${SYNCAGENT_SYNC_TARGET:-/etc/xroad}
    if [[ -d $target ]]; then
        chown -R "$SYNCAGENT_RUN_AS:" "$target" ||
            warn "could not make $target belong to $SYNCAGENT_RUN_AS; the first sync may fail"
    fi
fi

# As PID 1 we get no default SIGTERM action: handle it, so a pod deleted during the first sync
# stops at once instead of after its grace period. Children run in the background and are
# waited for, because bash runs traps only between commands.
child=
on_term() {
    warn "terminated during the first sync"
    [[ -z $child ]] || kill -TERM "$child" 2>/dev/null || true
    exit 143
}
trap on_term TERM INT

start_services() {
    trap - TERM INT
    if (($# == 0)); then
        read -r -a cmd <<<"$SYNCAGENT_EXEC"
        set -- "${cmd[@]}"
    fi
    log "starting: $*"
    exec "$@"
}

deadline=$((SECONDS + budget))
attempt=0
while :; do
    attempt=$((attempt + 1))
    # One try may not outlast the budget (at least 30 s so a try can finish at all).
    left=$((deadline - SECONDS))
    ((left < 30)) && left=30
    rc=0
    timeout --kill-after=5 "$left" "${as_user[@]}" "$SYNCAGENT_BIN" once &
    child=$!
    wait "$child" || rc=$?
    child=
    case $rc in
        0)
            log "first sync done (attempt $attempt)"
            start_services "$@"
            ;;
        2)
            die 2 "configuration error (syncagent exit 2): fix the settings shown above" \
                "(SYNCAGENT_* env, ${SYNCAGENT_CONFIG:-no config file}); not starting"
            ;;
        3)
            warn "first sync rejected by validation (exit 3): starting not-ready;" \
                "the agent keeps the last good tree and retries"
            start_services "$@"
            ;;
        4)
            warn "primary not initialized yet (exit 4): starting not-ready; the agent keeps trying"
            start_services "$@"
            ;;
        5)
            warn "syncing is paused (exit 5: a pause flag is set): starting with the tree as it is;" \
                "\`syncagent resume\` follows the primary again"
            start_services "$@"
            ;;
        126 | 127)
            die 1 "cannot run $SYNCAGENT_BIN (exit $rc)"
            ;;
        *)
            # 1 (transport/remote), 124/137 (the try hit the budget), anything unexpected.
            if ((SECONDS >= deadline)); then
                warn "first sync failed (exit $rc) for ${budget}s, $attempt attempt(s):" \
                    "starting not-ready; the agent keeps trying"
                start_services "$@"
            fi
            pause=$((retry + RANDOM % (retry / 2 + 1)))
            left=$((deadline - SECONDS))
            ((pause > left)) && pause=$left
            warn "first sync failed (exit $rc), attempt $attempt; retrying in ${pause}s"
            sleep "$pause" &
            child=$!
            wait "$child" || true
            child=
            ;;
    esac
done
