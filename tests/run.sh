#!/usr/bin/env bash
# The project's test command (README, .ci/run): sets up a fresh Debian machine, then lint + tests.
#   bash tests/run.sh [pytest args...]
# Installs, when missing: OpenSSH server/client, rsync, Prometheus and promtool, systemd-analyze,
# iproute2 and nftables (network fault tests), systemd-container and debootstrap (the unit under
# a real systemd, booted with systemd-nspawn), podman and runc (the images built and run), and
# what `podman kube play` needs besides: catatonit (podman builds its pod pause image with it)
# and iptables (netavark's bridge networks); then a venv in .venv with the project and its test
# extras, and a JDK with commons-configuration2, SnakeYAML and JAXB (tests/oracle: X-Road's own
# readers). Needs root for apt and for the sshd fixtures (they create the xroad and xroad-slave
# accounts a primary has).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  openssh-server openssh-client rsync prometheus systemd iproute2 nftables bash procps
  systemd-container debootstrap debian-archive-keyring
  podman runc netavark aardvark-dns catatonit iptables
  default-jdk-headless libcommons-configuration2-java libyaml-snake-java libjaxb-java
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's prometheus package starts a server on :9090; the tests start their own.
systemctl disable --now prometheus >/dev/null 2>&1 || true

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# exactly the locked releases (requirements/test.lock, with hashes), then the project itself
.venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements/test.lock
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .

.venv/bin/ruff check .
.venv/bin/mypy syncagent tests
exec .venv/bin/pytest -ra --durations=30 "$@"
