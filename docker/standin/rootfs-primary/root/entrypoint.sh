#!/bin/bash
# Test stand-in for the primary sidecar's /root/entrypoint.sh (the load-balancer primary of
# X-Road 7.x): the same steps in the same order, in our own words. syncagent's
# docker/Dockerfile.primary keeps it as it is.
log() { echo "$(date --utc -Iseconds) INFO [entrypoint] $*"; }

if [ -n "$XROAD_ADMIN_USER" ]; then
  # the deployment's admin account, created on the first start of the container
  if ! getent passwd "$XROAD_ADMIN_USER" &>/dev/null; then
    log "Creating the admin account from XROAD_ADMIN_USER"
    if ! getent group "xroad-securityserver-observer" &>/dev/null; then
      groupadd xroad-securityserver-observer
    fi
    useradd -m "${XROAD_ADMIN_USER}" -s /usr/sbin/nologin -G xroad-securityserver-observer
    echo "${XROAD_ADMIN_USER}:${XROAD_ADMIN_PASSWORD}" | chpasswd
  fi
fi
XROAD_ADMIN_PASSWORD=

mkdir -p /var/tmp/xroad
chown xroad:xroad /var/lib/xroad /var/tmp/xroad

log "Creating the internal gRPC keys"
rm -rf /var/run/xroad
# shellcheck disable=SC2174 # (upstream's form)
mkdir -p -m0750 /var/run/xroad
chown xroad:xroad /var/run/xroad
su - xroad -c sh -c /usr/share/xroad/scripts/xroad-base.sh

# sshd for the secondaries' sync: privilege separation directory, and host keys made now
# (a new container has new keys) unless some exist
mkdir -p /run/sshd && chmod 0755 /run/sshd
log "$(ssh-keygen -A)"

# the sync account (group xroad) reads /etc/xroad; node-local secrets stay as they are
shopt -s extglob
chown -R xroad:xroad /etc/xroad/!(xroad.properties|gpghome)
chmod -R g+rX,o= /etc/xroad/!(xroad.properties|gpghome)
shopt -u extglob

# the secondaries' public key, from the ssh key Secret
if [ -f /etc/.ssh/id_rsa.pub ]; then
  ln -f -s /etc/.ssh/id_rsa.pub /home/xroad-slave/.ssh/authorized_keys
fi

log "Starting the services"
exec /usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf
