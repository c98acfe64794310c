"""The shipped Kubernetes manifests run with ``podman kube play``: publish mode end to end.

docker/kubernetes/primary-pod.yaml (the headless Service and the primary Pod on the primary
image, docker/Dockerfile.primary) and secondary-deployment.yaml (two replicas of the secondary
image, docker/Dockerfile) are read as shipped, changed only by the adaptations podman 4.3
needs (support.kube.ADAPTATIONS, made from the files on every run), and played on a podman
network of their own (internal: nothing leaves the machine). Both images are the ones
test_image.py builds (support.podman.built: once per session), on the stand-in bases. The
Secrets are what an operator makes: the host-key and known_hosts Secrets by the shipped
make-host-key-secrets.sh, the ssh key pair and the variables as X-Road's guide has them. The
PersistentVolumeClaim is a podman volume holding a primary's configuration.

Real parts: the primary's sshd and supervisord with the publisher, the secondaries' agents,
the images' entrypoints. Readiness is polled here (podman runs no readiness probes), and the
kubelet's Secret update (a new ``..data`` directory, the symlink swapped) is imitated on the
volumes' directories. With CI=true a missing podman piece (catatonit, iptables) fails the run.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import REPO
from support.kube import (
    Playable,
    adapt,
    docs,
    env_secret_json,
    pod_spec,
    secret_data,
    secret_files,
)
from support.podman import (
    CACHE,
    IMAGE,
    PRIMARY_IMAGE,
    STANDIN,
    STANDIN_PRIMARY,
    Container,
    Podman,
    built,
)
from support.sshd import make_traversable_dir
from support.tools import require_file, require_tool
from support.waiting import get, until

from syncagent.demo.sample_tree import add_softtoken_key, build_primary_tree
from syncagent.publishdir import HEAD_NAME, Head, parse_head

K8S = REPO / "docker" / "kubernetes"
PRIMARY_YAML = K8S / "primary-pod.yaml"
SECONDARY_YAML = K8S / "secondary-deployment.yaml"
HOST_KEYS_SCRIPT = K8S / "make-host-key-secrets.sh"
NETWORK = "syncagent-kube"
XROAD_IDS = (999, 999)  # xroad in the stand-in bases, as in the sidecar images
PUBLISH_DIR = "/var/lib/syncagent/publish"  # the primary image's publish.dir
LOCAL_INI = "conf.d/local.ini"
# podman 4.3 builds its pause image with catatonit from one of these (helper_binaries_dir)
CATATONIT = [
    f"{d}/catatonit"
    for d in ("/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman")
] + ["/usr/lib/podman/catatonit"]


def the(kind: str, path: Path) -> dict[str, Any]:
    (doc,) = [d for d in docs(path) if d["kind"] == kind]
    return doc


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


# ---- the Secrets an operator makes -----------------------------------------------------------


def host_key_secrets(out: Path) -> dict[str, dict[str, bytes]]:
    """secret-primary-host-keys and secret-primary-known-hosts, by the shipped script."""
    res = run("bash", HOST_KEYS_SCRIPT, out)
    assert res.returncode == 0, res.stderr
    made = {}
    for path in sorted(out.glob("*.yaml")):
        (doc,) = docs(path)
        made[doc["metadata"]["name"]] = secret_data(doc)
    return made


def operator_secrets(area: Path) -> dict[str, dict[str, bytes]]:
    keygen = require_tool("ssh-keygen")
    key = area / "sync-key"
    res = run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "xroad@secondary", "-f", key)
    assert res.returncode == 0, res.stderr
    return {
        **host_key_secrets(area / "host-keys"),
        # as X-Road's load-balancer guide has them made
        "secret-ssh-keys": {
            "private-key": key.read_bytes(),
            "public-key": Path(f"{key}.pub").read_bytes(),
        },
        "secret-sidecar-variables": {
            "XROAD_TOKEN_PIN": b"1234",
            "XROAD_ADMIN_USER": b"xrd-admin",
            "XROAD_ADMIN_PASSWORD": b"not-a-real-password",
            "XROAD_LOG_LEVEL": b"INFO",
        },
    }


def referenced_secrets(workloads: list[dict[str, Any]]) -> set[str]:
    names = set()
    for doc in workloads:
        spec = pod_spec(doc)
        names |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for c in spec["containers"]:
            names |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    return names


# ---- the cluster ------------------------------------------------------------------------------


@dataclass
class Replica:
    """One secondary pod, reached on its pod address as the kubelet and Prometheus reach it."""

    pod: str
    c: Container
    port: int
    cluster: Cluster

    @property
    def url(self) -> str:
        return f"http://{self.cluster.ip(self.pod)}:{self.port}"

    def readyz(self) -> int:
        return get(self.url + "/readyz", timeout=3)[0]

    def status(self) -> dict[str, Any]:
        code, body = get(self.url + "/status", timeout=3)
        return json.loads(body) if code == 200 else {}

    def cat(self, path: str) -> str | None:
        res = self.c.exec("cat", path)
        return res.stdout if res.returncode == 0 else None

    def has(self, path: str) -> bool:
        return self.c.exec("test", "-f", path).returncode == 0


@dataclass
class Cluster:
    podman: Podman
    area: Path
    secrets: dict[str, dict[str, bytes]]
    primary: Playable
    secondary: Playable
    config: Path  # the PersistentVolumeClaim's volume, on the host
    primary_c: Container
    replicas: list[Replica] = field(default_factory=list)

    @property
    def primary_pod(self) -> str:
        return self.primary.name

    def ip(self, pod: str) -> str:
        infra = self.podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod)
        fmt = f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}'
        return self.podman("inspect", "--format", fmt, infra.stdout.strip()).stdout.strip()

    @functools.cached_property
    def head_file(self) -> Path:
        """The primary's HEAD in its container's writable layer, read with no exec per poll
        (the layer stays the container's across a pod stop and start)."""
        return self.primary_c.upper_dir() / PUBLISH_DIR[1:] / HEAD_NAME

    def head(self) -> Head | None:
        try:
            return parse_head(self.head_file.read_bytes())
        except (OSError, ValueError):
            return None

    def on_head(self) -> Head | None:
        """HEAD, when both secondaries have applied its generation by following it."""
        head = self.head()
        if head is None:
            return None
        for r in self.replicas:
            st = r.status()
            if st.get("generation") != head.generation or not st.get("following_head"):
                return None
        return head

    def change(self, line: str) -> None:
        """An edit on the primary, in place (owner and mode stay), as the UI rewrites a file."""
        with (self.config / LOCAL_INI).open("a") as fh:
            fh.write(f"; {line}\n")

    def host_key(self, kind: str = "ed25519") -> str:
        """What the primary's sshd presents now (a fresh connection), as 'type base64'."""
        res = run("ssh-keyscan", "-T", "3", "-t", kind, self.ip(self.primary_pod))
        lines = [ln.split(None, 1)[1] for ln in res.stdout.splitlines() if ln and ln[0] != "#"]
        return lines[0].strip() if lines else ""

    def diagnostics(self) -> str:
        out = []
        for c in (self.primary_c, *(r.c for r in self.replicas)):
            out.append(f"--- podman logs {c.name}:\n{c.logs()[-4000:]}")
        return "\n".join(out)

    def wait(self, pred: Any, what: str, timeout: float) -> Any:
        try:
            return until(pred, what, timeout, step=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None


def events(c: Container) -> list[dict[str, Any]]:
    """The JSON log lines of a container (what kubectl logs shows)."""
    out = []
    for line in c.logs().splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out


def logged_at(c: Container, event: str, generation: str) -> float | None:
    """When ``c`` logged ``event`` for ``generation`` (seconds since the epoch), if it did."""
    for doc in events(c):
        if doc.get("event") == event and doc.get("generation") == generation:
            stamp = datetime.datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00"))
            return stamp.timestamp()
    return None


def require_podman_pieces() -> None:
    """What ``podman kube play`` needs beyond podman itself (tests/run.sh installs them)."""
    require_file(CATATONIT, "catatonit (podman's pause image for pods)")
    require_tool("iptables")  # netavark's bridge networks
    require_tool("ssh-keyscan")
    require_tool("sftp")


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """The manifests fix the pods', volume's and secrets' names: one run per machine at a time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "kube.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def remove_all(podman: Podman, pods: list[str], volume: str, env_secrets: set[str]) -> None:
    podman("pod", "rm", "-f", "-t", "0", *pods, check=False, timeout=120)
    podman("volume", "rm", "-f", volume, check=False)
    for name in env_secrets:
        podman("secret", "rm", name, check=False)
    podman("network", "rm", "-f", NETWORK, check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    podman = Podman.here()
    require_podman_pieces()
    built(podman)
    primary_doc, deployment = the("Pod", PRIMARY_YAML), the("Deployment", SECONDARY_YAML)
    services = [
        d for p in (PRIMARY_YAML, SECONDARY_YAML) for d in docs(p) if d["kind"] == "Service"
    ]
    replicas = int(deployment["spec"]["replicas"])
    pods = [primary_doc["metadata"]["name"]] + [
        f"{deployment['metadata']['name']}-pod-{i}" for i in range(replicas)
    ]
    (claim,) = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(primary_doc)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    area = make_traversable_dir("syncagent-kube-")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, area, ignore_errors=True)
        cleanup.enter_context(exclusive())
        secrets = operator_secrets(area)
        assert referenced_secrets([primary_doc, deployment]) == set(secrets), (
            "the manifests reference Secrets this test does not make"
        )
        primary = adapt(primary_doc, secrets, services, area)
        secondary = adapt(deployment, secrets, services, area)
        remove_all(podman, pods, claim, primary.env_secrets | secondary.env_secrets)
        try:
            # the images under the names the manifests pull (imagePullPolicy IfNotPresent)
            for tag, doc in ((PRIMARY_IMAGE, primary_doc), (IMAGE, deployment)):
                podman("tag", tag, pod_spec(doc)["containers"][0]["image"])
            for name in primary.env_secrets | secondary.env_secrets:
                podman("secret", "create", name, "-", input=env_secret_json(secrets[name]))
            podman("network", "create", "--internal", NETWORK)
            podman("volume", "create", claim)
            config = Path(
                podman("volume", "inspect", "--format", "{{.Mountpoint}}", claim).stdout.strip()
            )
            build_primary_tree(config, mtime=time.time() - 3600, owner=XROAD_IDS)
            os.chown(config, *XROAD_IDS)
            t0 = time.monotonic()
            podman(
                "kube",
                "play",
                "--network",
                primary.network(NETWORK),
                str(primary.write(area / "primary.yaml")),
                timeout=180,
            )
            (pc,) = primary_doc["spec"]["containers"]
            cl = Cluster(
                podman,
                area,
                secrets,
                primary,
                secondary,
                config,
                Container(podman, f"{primary.name}-{pc['name']}"),
            )
            # the secondaries start once the primary serves (in a cluster they would retry)
            cl.wait(cl.head, "the primary's first HEAD", 90)
            podman(
                "kube",
                "play",
                "--network",
                secondary.network(NETWORK),
                str(secondary.write(area / "secondaries.yaml")),
                timeout=240,
            )
            (sc,) = pod_spec(deployment)["containers"]
            probe_port = {p["name"]: p["containerPort"] for p in sc["ports"]}[
                sc["readinessProbe"]["httpGet"]["port"]
            ]
            cl.replicas = [
                Replica(pod, Container(podman, f"{pod}-{sc['name']}"), probe_port, cl)
                for pod in pods[1:]
            ]
            print(f"kube: pods up in {time.monotonic() - t0:.1f}s")
            yield cl
        finally:
            remove_all(podman, pods, claim, primary.env_secrets | secondary.env_secrets)
            for tag, doc in ((PRIMARY_IMAGE, primary_doc), (IMAGE, deployment)):
                podman("untag", tag, pod_spec(doc)["containers"][0]["image"], check=False)


# ---- the primary image ------------------------------------------------------------------------


def test_the_primary_image_keeps_its_base_and_refuses_a_secondary_one() -> None:
    """docker/Dockerfile.primary changes nothing of the base's start: its entrypoint, X-Road's
    programs and supervisord's settings are the base's; what it adds (the publisher's program,
    the sshd drop-in, the settings) are the shipped files; and a base that is no primary fails
    at the first step, saying so."""
    podman = Podman.here()
    built(podman)

    def digests(image: str, *paths: str) -> list[str]:
        res = podman("run", "--rm", "--network", "none", image, "sha256sum", *paths)
        return [line.split()[0] for line in res.stdout.splitlines()]

    base = (
        "/root/entrypoint.sh",
        "/etc/supervisor/conf.d/xroad.conf",
        "/etc/supervisor/supervisord.conf",
    )
    assert digests(PRIMARY_IMAGE, *base) == digests(STANDIN_PRIMARY, *base)
    ours = {
        "/etc/supervisor/conf.d/syncagent-publish.conf": "docker/supervisor/syncagent-publish.conf",
        "/etc/ssh/sshd_config.d/xroad-sync.conf": "docker/sshd/xroad-sync.conf",
        "/etc/syncagent/syncagent.toml": "docker/syncagent-primary.toml",
    }
    assert digests(PRIMARY_IMAGE, *ours) == [
        hashlib.sha256((REPO / f).read_bytes()).hexdigest() for f in ours.values()
    ]
    cmd = podman("image", "inspect", "--format", "{{json .Config.Cmd}}", PRIMARY_IMAGE).stdout
    assert json.loads(cmd) == ["/root/entrypoint.sh"]
    res = podman.build(
        "localhost/syncagent-primary:on-a-secondary",
        REPO,
        REPO / "docker" / "Dockerfile.primary",
        build_args={"BASE": STANDIN},
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "docker/Dockerfile.primary needs a sidecar PRIMARY base (a -primary tag)" in out
    assert "STEP 4/" not in out, "steps after the check ran"


# ---- what the manifests do --------------------------------------------------------------------


def test_the_harness_adapts_only_what_podman_needs(cluster: Cluster) -> None:
    """The documents played are the shipped ones with the listed changes and nothing else."""
    assert cluster.primary.applied == {"secret volumes", "env secrets", "ports", "services"}
    assert cluster.secondary.applied == {"secret volumes", "env secrets", "ports", "probe ports"}
    assert cluster.primary.aliases == ["service-security-server-sidecar-primary"]
    shipped = the("Deployment", SECONDARY_YAML)
    played = cluster.secondary.doc
    (s,), (p,) = pod_spec(shipped)["containers"], pod_spec(played)["containers"]
    assert {k for k in s if s[k] != p.get(k)} == {
        "ports",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert p[probe]["httpGet"]["port"] == 9101
        assert {**p[probe], "httpGet": s[probe]["httpGet"]} == s[probe]


def test_both_secondaries_ready_on_the_primarys_head(cluster: Cluster) -> None:
    """Ready through /readyz (polled: podman runs no readiness probes), on the generation the
    primary's HEAD names, which they follow (primary.publish_dir = auto, the default)."""
    for r in cluster.replicas:
        cluster.wait(lambda r=r: r.readyz() == 200, f"{r.pod} /readyz 200", 120)
    head = cluster.wait(cluster.on_head, "both secondaries on the primary's HEAD", 60)
    for r in cluster.replicas:
        st = r.status()
        assert st["generation"] == head.generation and st["following_head"], st
        assert st["last_result"] in ("applied", "unchanged"), st
        # the primary's keyconf.xml, byte for byte
        keyconf = (cluster.config / "signer" / "keyconf.xml").read_text()
        assert r.cat("/etc/xroad/signer/keyconf.xml") == keyconf
        # the Secret volume as the kubelet lays it out, seen from inside
        res = r.c.exec("readlink", "/etc/syncagent/known_hosts/known_hosts")
        assert res.stdout.strip() == "..data/known_hosts", res
        # what docker/README.md has an operator run to check a pod
        res = r.c.exec("/opt/syncagent/bin/syncagent", "status", "--json")
        assert res.returncode == 0, res
        doc = json.loads(res.stdout)
        assert doc["ready"] is True and doc["following_head"] is True, doc


def test_the_primary_runs_sshd_and_the_publisher_read_only(cluster: Cluster) -> None:
    pc = cluster.primary_c
    status = pc.exec("supervisorctl", "status").stdout
    states = dict(line.split()[:2] for line in status.splitlines() if line.strip())
    assert states.get("syncagent-publish") == "RUNNING", status
    assert states.get("sshd") == "RUNNING", status
    assert set(states.values()) == {"RUNNING"}, status
    ps = pc.exec("ps", "-eo", "user:12,args").stdout
    (publisher,) = [ln for ln in ps.splitlines() if "/opt/syncagent/bin/syncagent publish" in ln]
    assert publisher.split()[0] == "xroad", ps
    # sshd presents the Secret's host key, which it reads from the kubelet-style mount (0400)
    secret = cluster.secrets["secret-primary-host-keys"]
    assert cluster.host_key() == " ".join(secret["ssh_host_ed25519_key.pub"].decode().split()[:2])
    res = pc.exec("stat", "-L", "-c", "%a %U", "/etc/ssh/xroad-host-keys/ssh_host_ed25519_key")
    assert res.stdout.split() == ["400", "root"], res
    # xroad-slave: the publish dir and /etc/xroad readable over SFTP, nothing writable
    key = cluster.area / "client-key"
    key.write_bytes(cluster.secrets["secret-ssh-keys"]["private-key"])
    key.chmod(0o600)
    ip = cluster.ip(cluster.primary_pod)
    known = cluster.area / "known_hosts.ip"
    known.write_text(f"{ip} {cluster.host_key()}\n")

    def sftp(batch: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "sftp",
                "-b",
                "-",
                "-i",
                str(key),
                "-o",
                f"UserKnownHostsFile={known}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                f"xroad-slave@{ip}",
            ],
            input=batch,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listing = sftp(f"ls -1 {PUBLISH_DIR}\nls -1 /etc/xroad/signer\n")
    assert listing.returncode == 0, listing.stderr
    assert {"HEAD", "manifests", "objects", "keyconf.xml"} <= {
        Path(w).name for w in listing.stdout.split()
    }, listing.stdout
    for target in (f"{PUBLISH_DIR}/x", "/etc/xroad/x"):
        put = sftp(f"put /etc/hostname {target}\n")
        assert put.returncode != 0 and "Permission denied" in put.stderr, put
    # the publisher's port, for Prometheus, and its log lines in the pod's log (kubectl logs)
    code, body = get(f"http://{ip}:9102/metrics", timeout=3)
    assert code == 200 and re.search(r"^syncagent_publish_head_sequence \d", body, re.M)
    assert any(
        e.get("event") == "publish" and e.get("result") == "published" for e in events(pc)
    ), pc.logs()[-3000:]


def test_a_change_on_the_primary_reaches_both_within_5s(
    cluster: Cluster, record_property: Any
) -> None:
    before = cluster.wait(cluster.on_head, "both secondaries on HEAD", 60)
    t0, wall = time.monotonic(), time.time()
    key = add_softtoken_key(cluster.config)
    head = cluster.wait(
        lambda: (h := cluster.on_head()) and h.generation != before.generation and h,
        "both secondaries on the new HEAD",
        30,
    )
    took = time.monotonic() - t0
    record_property("kube_change_seconds", round(took, 2))
    # where the time went: the publisher's settle and build, each secondary's poll and sync
    steps = [("published", logged_at(cluster.primary_c, "publish", head.generation))] + [
        (f"secondary {i} applied", logged_at(r.c, "sync", head.generation))
        for i, r in enumerate(cluster.replicas)
    ]
    timeline = ", ".join(f"{n} +{t - wall:.2f}s" if t else f"{n} ?" for n, t in steps)
    print(f"kube: a change reached both secondaries in {took:.2f}s ({timeline})")
    assert head.sequence > before.sequence
    for r in cluster.replicas:
        assert r.has(f"/etc/xroad/signer/softtoken/{key}.p12"), r.pod
    assert took <= 5, f"the change took {took:.2f}s to reach both secondaries: {timeline}"


def test_primary_down_secondaries_stay_ready_and_catch_up(
    cluster: Cluster, record_property: Any
) -> None:
    cluster.wait(cluster.on_head, "both secondaries on HEAD", 60)
    cluster.podman("pod", "stop", "-t", "30", cluster.primary_pod, timeout=90)
    try:
        cluster.wait(
            lambda: all(r.status().get("connected") is False for r in cluster.replicas),
            "both secondaries to notice the primary is gone",
            60,
        )
        cluster.change("changed while the primary was down")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            codes = [r.readyz() for r in cluster.replicas]
            assert codes == [200, 200], f"not ready without the primary: {codes}"
            time.sleep(0.5)
    finally:
        cluster.podman("pod", "start", cluster.primary_pod, timeout=90)
    t0 = time.monotonic()
    want = (cluster.config / LOCAL_INI).read_text()
    cluster.wait(
        lambda: all(r.cat(f"/etc/xroad/{LOCAL_INI}") == want for r in cluster.replicas),
        "both secondaries to catch up",
        120,
    )
    record_property("kube_catch_up_seconds", round(time.monotonic() - t0, 1))
    print(f"kube: caught up {time.monotonic() - t0:.1f}s after the primary restarted")
    cluster.wait(cluster.on_head, "both secondaries on HEAD again", 60)
    assert all(r.readyz() == 200 for r in cluster.replicas)


def test_a_rotated_host_key_reaches_the_running_agents(cluster: Cluster) -> None:
    """Both Secrets rotated as the kubelet updates a mounted Secret (a new ``..data``, the
    symlink swapped): sshd presents the new key to new connections, and each agent, noticing
    its known_hosts change, reconnects with it, with no restart of anything."""
    cluster.wait(cluster.on_head, "both secondaries on HEAD", 60)
    before = {r.pod: (r.status(), r.c.inspect("{{.State.StartedAt}}")) for r in cluster.replicas}
    old_key = cluster.host_key()
    new = host_key_secrets(cluster.area / "rotated")
    new_key = " ".join(
        new["secret-primary-host-keys"]["ssh_host_ed25519_key.pub"].decode().split()[:2]
    )
    assert new_key != old_key
    # 1. the primary's Secret: sshd reads host keys for each new connection
    (source,) = [
        v["secret"]
        for v in pod_spec(the("Pod", PRIMARY_YAML))["volumes"]
        if v.get("secret", {}).get("secretName") == "secret-primary-host-keys"
    ]
    cluster.primary.volumes["primary-host-keys"].write(
        secret_files(new["secret-primary-host-keys"], source)
    )
    cluster.wait(lambda: cluster.host_key() == new_key, "sshd presenting the new key", 20)
    # 2. the secondaries' known_hosts Secret: the agents, still on their old connections, see
    # the swap and reconnect with the new file (the old one would refuse the new key)
    (source,) = [
        v["secret"]
        for v in pod_spec(the("Deployment", SECONDARY_YAML))["volumes"]
        if v.get("secret", {}).get("secretName") == "secret-primary-known-hosts"
    ]
    cluster.secondary.volumes["primary-known-hosts"].write(
        secret_files(new["secret-primary-known-hosts"], source)
    )
    for r in cluster.replicas:
        connects = before[r.pod][0]["connects"]
        cluster.wait(
            lambda r=r, n=connects: r.status().get("connects", 0) > n and r.status()["connected"],
            f"{r.pod} reconnected with the rotated known_hosts",
            30,
        )
        assert "credentials changed" in r.c.logs(), r.pod
    # 3. syncs go on over the new connections; nothing restarted
    key = add_softtoken_key(cluster.config)
    for r in cluster.replicas:
        cluster.wait(
            lambda r=r: r.has(f"/etc/xroad/signer/softtoken/{key}.p12"),
            f"{r.pod} syncing after the rotation",
            30,
        )
        st = r.status()
        assert st["pid"] == before[r.pod][0]["pid"], "the agent restarted"
        assert r.c.inspect("{{.State.StartedAt}}") == before[r.pod][1], "the container restarted"


def test_secondaries_walk_when_the_head_is_absent(cluster: Cluster) -> None:
    """(Last: it stops the publisher.) No HEAD (a new primary container before its first
    build, or a stopped publisher): the secondaries walk /etc/xroad over the same account."""
    cluster.wait(cluster.on_head, "both secondaries on HEAD", 60)
    pc = cluster.primary_c
    res = pc.exec("supervisorctl", "stop", "syncagent-publish")
    assert res.returncode == 0, res
    cluster.change("changed with no publisher")
    old = time.time() - 600  # older than sync.settle: a walk takes it at once
    os.utime(cluster.config / LOCAL_INI, (old, old))
    assert pc.exec("rm", f"{PUBLISH_DIR}/{HEAD_NAME}").returncode == 0
    want = (cluster.config / LOCAL_INI).read_text()
    cluster.wait(
        lambda: all(r.cat(f"/etc/xroad/{LOCAL_INI}") == want for r in cluster.replicas),
        "both secondaries to walk to the change",
        30,
    )
    for r in cluster.replicas:
        st = r.status()
        assert st["following_head"] is False and st["walk_fallbacks"] >= 1, st
        assert r.readyz() == 200
