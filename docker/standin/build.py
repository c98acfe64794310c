#!/usr/bin/env python3
"""Build a stand-in for the X-Road sidecar *secondary* image, offline, and `podman import` it.

    python3 docker/standin/build.py [--suite bookworm] [--tag TAG] [--mirror URL]

Needs root, debootstrap and podman. Prints the tag on stdout; progress goes to stderr.

The real base (niis/xroad-security-server-sidecar:<version>-secondary) comes from a registry
that the test machines cannot reach, so this makes an image that gives docker/Dockerfile and
syncagent exactly what the real one gives them, from a debootstrapped Debian rootfs:

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

`--suite bullseye` (Python 3.9) makes a base as old, for Python, as the sidecar images before
7.5.0 (bionic 3.6, focal 3.8): docker/Dockerfile must refuse it.

Cached on this machine: the rootfs tarball under /var/cache/syncagent-test/standin/ (or
$SYNCAGENT_TEST_CACHE/standin/), keyed by a hash of every input (suite, mirror, packages,
debootstrap's version, this script, rootfs/); the image carries the key as a label. A second
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
OVERLAY = HERE / "rootfs"
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
# as the secondary Dockerfile does it
crudini --set /etc/xroad/conf.d/node.ini node type 'slave'
chown xroad:xroad /etc/xroad/conf.d/node.ini
rm -f /etc/cron.d/xroad-*
chown root:root /root/entrypoint.sh /etc/supervisor/conf.d/xroad.conf
chmod 0755 /root/entrypoint.sh
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


def inputs(suite: str, mirror: str) -> dict[str, object]:
    debootstrap = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "debootstrap"], capture_output=True, text=True
    ).stdout
    overlay = sorted(
        (str(p.relative_to(OVERLAY)), oct(p.stat().st_mode & 0o7777), sha256(p))
        for p in OVERLAY.rglob("*")
        if p.is_file()
    )
    return {
        "suite": suite,
        "mirror": mirror,
        "packages": PACKAGES,
        "debootstrap": debootstrap,
        "xroad_version": XROAD_VERSION,
        "script": sha256(Path(__file__)),
        "overlay": overlay,
    }


def build_rootfs(suite: str, mirror: str, tarball: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    root = work / "root"
    try:
        t0 = time.monotonic()
        run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), suite,
             str(root), mirror],
            stdout=subprocess.DEVNULL,
        )
        log(f"debootstrap {suite}: {time.monotonic() - t0:.0f}s")
        shutil.copytree(OVERLAY, root, dirs_exist_ok=True, symlinks=True)
        run(
            ["chroot", str(root), "/bin/bash", "-c", CUSTOMIZE],
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
    for old in CACHE.glob(f"{suite}-*.tar"):  # older inputs of this suite: never used again
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


def build(suite: str, tag: str, mirror: str) -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    spec = inputs(suite, mirror)
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    tarball = CACHE / f"{suite}-{key}.tar"
    # One builder per suite at a time (parallel test runs, a second terminal).
    with (CACHE / f"{suite}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_key(tag) == key:
            log(f"{tag} is up to date ({key})")
            return tag
        if tarball.exists():
            log(f"cached rootfs {tarball}")
        else:
            build_rootfs(suite, mirror, tarball)
        run(
            ["podman", "import",
             "--change", 'CMD ["/root/entrypoint.sh"]',
             "--change", "ENV DEBIAN_FRONTEND=noninteractive",
             "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", f"LABEL {LABEL}={key}",
             "--message", f"syncagent test stand-in for the X-Road sidecar secondary ({suite})",
             str(tarball), tag],
            stdout=subprocess.DEVNULL,
        )
    return tag


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    ap.add_argument("--tag", help=f"default {REPOSITORY}:secondary for bookworm, "
                                  f"{REPOSITORY}:<suite>-secondary otherwise")
    ap.add_argument("--mirror", default=os.environ.get("SYNCAGENT_STANDIN_MIRROR", MIRROR))
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("run as root (debootstrap, chroot, rootful podman)")
    tag = args.tag or (f"{REPOSITORY}:secondary" if args.suite == "bookworm"
                       else f"{REPOSITORY}:{args.suite}-secondary")
    print(build(args.suite, tag, args.mirror))
    return 0


if __name__ == "__main__":
    sys.exit(main())
