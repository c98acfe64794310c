#!/usr/bin/env python3
"""Build a stand-in for an X-Road sidecar *secondary* or *primary* image, offline, and
`podman import` it.

    python3 docker/standin/build.py [--role secondary|primary] [--suite bookworm] [--tag TAG]
                                    [--mirror URL]

Needs root, debootstrap and podman. Prints the tag on stdout; progress goes to stderr.

The real bases (niis/xroad-security-server-sidecar:<version>-secondary and -primary) come from
a registry that the test machines cannot reach, so this makes an image that gives
docker/Dockerfile (secondary) or docker/Dockerfile.primary (primary) and syncagent exactly what
the real one gives them, from a debootstrapped Debian rootfs:

- python3 (bookworm: 3.11, the agent's floor), supervisor with the distribution's stock
  /etc/supervisor/supervisord.conf, crudini, cron, rsync, openssh-client, procps;
- user xroad (uid 999, home /var/lib/xroad), /etc/xroad with conf.d/node.ini type=slave (set the
  way the secondary Dockerfile sets it), /usr/share/xroad/config/VERSION copied to
  /etc/xroad/VERSION;
- everything under rootfs/ beside this script: /root/entrypoint.sh in the shape of X-Road
  7.4.1-7.8.0, /etc/supervisor/conf.d/xroad.conf with [program:cron] and placeholder X-Road
  programs (xroad-standin; xroad-proxy's answers the health check on port 5588), and the
  gRPC key step's xroad-base.sh;
- CMD /root/entrypoint.sh, as the real image.

`--role primary` makes the primary's instead: openssh-server too, node.ini type=master, the
read-only sync account xroad-slave (in group xroad, as X-Road's load-balancer guide creates it),
no SSH host keys in the image (the entrypoint makes them at start, as the real one does), and
rootfs-primary/ over rootfs/: the balancer primary's /root/entrypoint.sh (host keys, /etc/xroad
group-readable, authorized_keys linked to the Secret's /etc/.ssh/id_rsa.pub) and an xroad.conf
with [program:sshd] beside the X-Road programs and cron.

`--suite bullseye` (Python 3.9) makes a base as old, for Python, as the sidecar images before
7.5.0 (bionic 3.6, focal 3.8): docker/Dockerfile must refuse it.

Cached on this machine: the rootfs tarball under /var/cache/syncagent-test/standin/ (or
$SYNCAGENT_TEST_CACHE/standin/), keyed by a hash of every input (role, suite, mirror, packages,
debootstrap's version, this script, the overlays); the image carries the key as a label. A second
run with the same inputs does nothing; a fresh machine builds once (debootstrap: about a minute).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OVERLAYS = {"secondary": (HERE / "rootfs",), "primary": (HERE / "rootfs", HERE / "rootfs-primary")}
CACHE = Path(os.environ.get("SYNCAGENT_TEST_CACHE", "/var/cache/syncagent-test")) / "standin"
MIRROR = "http://deb.debian.org/debian"
REPOSITORY = "localhost/xroad-sidecar-standin"
LABEL = "org.syncagent.standin.key"
# What the real base and secondary layers install that docker/Dockerfile or syncagent use.
# (minbase has bash, coreutils, util-linux's setpriv, passwd's useradd/chpasswd.) Not
# python3-venv: the real base lacks it and docker/Dockerfile installs it.
PACKAGES = (
    "adduser",
    "cron",
    "crudini",
    "debconf",
    "openssh-client",
    "procps",
    "python3",
    "rsync",
    "supervisor",
)
ROLE_PACKAGES = {"secondary": (), "primary": ("openssh-server",)}
# What dpkg-query prints for xroad-proxy in a noble-based sidecar (the slim base records it).
XROAD_VERSION = "7.6.2-1.ubuntu24.04"

CUSTOMIZE = r"""
set -euo pipefail
# as the sidecar base does it
adduser --quiet --system --uid 999 --home /var/lib/xroad --no-create-home --shell /bin/bash \
    --group xroad
mkdir -p /var/lib/xroad /etc/xroad/conf.d /etc/xroad/ssl /etc/xroad/services \
    /etc/xroad/backup.d
chown xroad:xroad /var/lib/xroad /etc/xroad /etc/xroad/conf.d /etc/xroad/ssl \
    /etc/xroad/services /etc/xroad/backup.d
chmod 0751 /etc/xroad
chmod 0750 /etc/xroad/conf.d /etc/xroad/ssl
mkdir -p /usr/share/xroad/config
printf '%s' "$XROAD_VERSION" >/usr/share/xroad/config/VERSION
cp /usr/share/xroad/config/VERSION /etc/xroad/VERSION
chown root:root /root/entrypoint.sh /etc/supervisor/conf.d/xroad.conf
chmod 0755 /root/entrypoint.sh
"""
# What the secondary and the primary layers add on the common base.
ROLE_CUSTOMIZE = {
    "secondary": r"""
crudini --set /etc/xroad/conf.d/node.ini node type 'slave'
chown xroad:xroad /etc/xroad/conf.d/node.ini
rm -f /etc/cron.d/xroad-*
""",
    "primary": r"""
crudini --set /etc/xroad/conf.d/node.ini node type 'master'
chown xroad:xroad /etc/xroad/conf.d/node.ini
rm -f /etc/cron.d/xroad-*
# the load-balancer guide's sync account: a system user in group xroad, so it reads /etc/xroad
adduser --quiet --system --shell /bin/bash --ingroup xroad --home /home/xroad-slave xroad-slave
install -d -m 0755 /home/xroad-slave/.ssh
# no host keys in the image: the entrypoint makes them when a container starts
rm -f /etc/ssh/ssh_host_*
""",
}
CLEANUP = r"""
apt-get clean
rm -rf /var/lib/apt/lists/* /etc/resolv.conf /etc/hostname
"""


def log(msg: str) -> None:
    print(f"[standin] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], **kw: object) -> None:
    log("$ " + " ".join(argv))
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def packages(role: str) -> tuple[str, ...]:
    return PACKAGES + ROLE_PACKAGES[role]


def inputs(role: str, suite: str, mirror: str) -> dict[str, object]:
    debootstrap = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "debootstrap"], capture_output=True, text=True
    ).stdout
    overlay = sorted(
        (str(p.relative_to(HERE)), oct(p.stat().st_mode & 0o7777), sha256(p))
        for o in OVERLAYS[role]
        for p in o.rglob("*")
        if p.is_file()
    )
    return {
        "role": role,
        "suite": suite,
        "mirror": mirror,
        "packages": packages(role),
        "debootstrap": debootstrap,
        "xroad_version": XROAD_VERSION,
        "script": sha256(Path(__file__)),
        "overlay": overlay,
    }


def build_rootfs(role: str, suite: str, mirror: str, tarball: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    root = work / "root"
    try:
        t0 = time.monotonic()
        run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages(role)), suite,
             str(root), mirror],
            stdout=subprocess.DEVNULL,
        )
        log(f"debootstrap {suite} ({role}): {time.monotonic() - t0:.0f}s")
        for overlay in OVERLAYS[role]:  # later ones over earlier ones
            shutil.copytree(overlay, root, dirs_exist_ok=True, symlinks=True)
        run(
            ["chroot", str(root), "/bin/bash", "-c", CUSTOMIZE + ROLE_CUSTOMIZE[role] + CLEANUP],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "XROAD_VERSION": XROAD_VERSION,
                 "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
        )
        partial = tarball.with_name(tarball.name + ".partial")
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial),
             "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "."])
        partial.rename(tarball)
        log(f"rootfs {tarball.name}: {tarball.stat().st_size / 1e6:.0f} MB, "
            f"{time.monotonic() - t0:.0f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # older inputs of this role and suite (and, for the secondary, the names from before
    # roles): never used again
    stale = list(CACHE.glob(f"{suite}-{role}-*.tar"))
    if role == "secondary":
        stale += CACHE.glob(f"{suite}-" + "[0-9a-f]" * 16 + ".tar")
    for old in stale:
        if old != tarball:
            log(f"pruning {old.name}")
            old.unlink()


def image_key(tag: str) -> str | None:
    res = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}',
         tag],
        capture_output=True, text=True,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def build(role: str, suite: str, tag: str, mirror: str) -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    spec = inputs(role, suite, mirror)
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    tarball = CACHE / f"{suite}-{role}-{key}.tar"
    # One builder per role and suite at a time (parallel test runs, a second terminal).
    with (CACHE / f"{suite}-{role}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_key(tag) == key:
            log(f"{tag} is up to date ({key})")
            return tag
        if tarball.exists():
            log(f"cached rootfs {tarball}")
        else:
            build_rootfs(role, suite, mirror, tarball)
        run(
            ["podman", "import",
             "--change", 'CMD ["/root/entrypoint.sh"]',
             "--change", "ENV DEBIAN_FRONTEND=noninteractive",
             "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", f"LABEL {LABEL}={key}",
             "--message", f"syncagent test stand-in for the X-Road sidecar {role} ({suite})",
             str(tarball), tag],
            stdout=subprocess.DEVNULL,
        )
    return tag


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default="secondary", choices=sorted(OVERLAYS),
                    help="which sidecar image to stand in for (default secondary)")
    ap.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    ap.add_argument("--tag", help=f"default {REPOSITORY}:<role> for bookworm, "
                                  f"{REPOSITORY}:<suite>-<role> otherwise")
    ap.add_argument("--mirror", default=os.environ.get("SYNCAGENT_STANDIN_MIRROR", MIRROR))
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("run as root (debootstrap, chroot, rootful podman)")
    tag = args.tag or (f"{REPOSITORY}:{args.role}" if args.suite == "bookworm"
                       else f"{REPOSITORY}:{args.suite}-{args.role}")
    print(build(args.role, args.suite, tag, args.mirror))
    return 0


if __name__ == "__main__":
    sys.exit(main())
