#!/bin/bash
# Test stand-in for the secondary sidecar's /root/entrypoint.sh as X-Road 7.4.1 to 7.8.0 ship
# it: the same statements in the same order, in our own words. syncagent's docker/Dockerfile
# removes the first sync, its retry loop and the cron job from it.
log() { echo "$(date --utc -Iseconds) INFO [entrypoint] $*"; }
warn() { echo "$(date --utc -Iseconds) WARN [entrypoint] $*" >&2; }

if [ -n "$XROAD_ADMIN_USER" ]; then
  # the deployment's admin account, created on the first start of the container
  if ! getent passwd "$XROAD_ADMIN_USER" &>/dev/null; then
    log "Creating the admin account from XROAD_ADMIN_USER"

    if ! getent group "xroad-securityserver-observer" &>/dev/null; then
      groupadd xroad-securityserver-observer
    fi
    useradd -m "${XROAD_ADMIN_USER}" -s /usr/sbin/nologin -G xroad-securityserver-observer
    echo "${XROAD_ADMIN_USER}:${XROAD_ADMIN_PASSWORD}" | chpasswd
    echo "xroad-proxy xroad-common/username string ${XROAD_ADMIN_USER}" | debconf-set-selections
  fi
fi
XROAD_ADMIN_PASSWORD=

# (sic: upstream passes 1750 as a directory, not as -m 1750)
mkdir -p 1750 /var/tmp/xroad
chown xroad:xroad /var/lib/xroad /var/tmp/xroad
chown -R xroad:xroad /etc/xroad

log "Creating the internal gRPC keys"
rm -rf /var/run/xroad
# shellcheck disable=SC2174 # (upstream's form)
mkdir -p -m0750 /var/run/xroad
chown xroad:xroad /var/run/xroad
su - xroad -c sh -c /usr/share/xroad/scripts/xroad-base.sh

# first copy of the primary's configuration: retried until it works
log "Copying the configuration from ${XROAD_PRIMARY_DNS}..."

RSYNC_CMD="rsync -q -e 'ssh -i /etc/.ssh/id_rsa -o StrictHostKeyChecking=no -o ConnectTimeout=5 ' -avz --timeout=10 --delete-delay --exclude /xroad.properties --exclude /gpghome --exclude '/conf.d/node.ini' --exclude '*.tmp' --delay-updates xroad-slave@${XROAD_PRIMARY_DNS}:/etc/xroad/ /etc/xroad/"

set -o pipefail
while :; do
 su -c "$RSYNC_CMD" xroad |& sed 's/^/    /' && break
 sleep 5 || exit 1
done

# after that, cron repeats the copy every minute
echo "* * * * * xroad $RSYNC_CMD 2>&1" > /etc/cron.d/xroad-state-sync
chown root:root /etc/cron.d/xroad-state-sync && chmod 644 /etc/cron.d/xroad-state-sync

log "Configuration copied, starting the services"

# supervisord runs the X-Road services from here on
exec /usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf
