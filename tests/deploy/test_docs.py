"""The deployment docs agree with the shipped files, both ways.

docker/README.md and systemd/README.md name files, Secrets, volumes and their mount points,
ports and alerts; an operator follows them word for word. Each test reads one kind of name out
of the prose or its tables and the same kind out of the shipped files (docker/, systemd/, the
manifests, the alert rules, the test harness's list of podman adaptations), and holds the two
sets equal, or the docs' set inside the files' where the docs only name some.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO
from support.kube import ADAPTATIONS, docs, pod_spec

from syncagent.publishdir import HEAD_NAME
from syncagent.settings import DEFAULT_PUBLISH_DIR, STATE_DIR_NAME

DOCKER = REPO / "docker"
SYSTEMD = REPO / "systemd"
K8S = DOCKER / "kubernetes"
DOCKER_README = DOCKER / "README.md"
SYSTEMD_README = SYSTEMD / "README.md"
READMES = (DOCKER_README, SYSTEMD_README)
ALERTS = DOCKER / "prometheus" / "syncagent-alerts.yml"
HOST_KEYS_SCRIPT = K8S / "make-host-key-secrets.sh"
# Where a container path a README names may be set: the deployment files, the stand-ins (what
# the base images have), and the agent (its defaults, e.g. the pause flag).
SHIPPED_TREES = (DOCKER, SYSTEMD, REPO / "syncagent")
# Paths the agent makes at run time from a setting and a name in its code.
MADE_AT_RUN_TIME = {
    str(DEFAULT_PUBLISH_DIR / HEAD_NAME): "the publisher's HEAD in the default publish dir",
    f"/etc/xroad/{STATE_DIR_NAME}": "the agent's state dir, <sync.target>/.syncagent",
}
# Absolute paths the READMEs name that no shipped file holds, and why that is right.
NOT_SHIPPED = {
    "/var/log/xroad/slave-sync.log": "the old rsync unit's log, which the docs say to remove",
    "/etc/ssh/sshd_config": "the host's own sshd configuration, edited by hand on IG-XLB",
    "/etc/ssh/ssh_host_ed25519_key.pub": "the IG-XLB primary's own host key",
    "/tmp": "named as a place the pause flag must not be",
}


def text(path: Path) -> str:
    return path.read_text()


def backticked(md: str) -> list[str]:
    """Inline code spans of a Markdown text (not indented blocks)."""
    return re.findall(r"`([^`\n]+)`", md)


def table(md: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``header``."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {header} |"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def norm(path: str) -> str:
    return path.rstrip("/") or "/"


def workloads() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in docs(p) if d["kind"] != "Service"]


def role(doc: dict[str, Any]) -> str:
    meta = doc["metadata"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"]
    return str(meta["labels"]["role"])


# ---- files --------------------------------------------------------------------------------


def shipped_files() -> set[str]:
    return {
        str(p.relative_to(DOCKER))
        for p in DOCKER.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p != DOCKER_README
    }


def test_the_file_table_lists_every_file_here_and_nothing_else() -> None:
    entries = [e for row in table(text(DOCKER_README), "file") for e in codes(row[0])]
    for e in entries:
        assert (DOCKER / e).exists(), f"docker/README.md lists {e}, which is not there"
    files = shipped_files()
    unlisted = sorted(
        f
        for f in files
        if not any(f == e or (e.endswith("/") and f.startswith(e)) for e in entries)
    )
    assert not unlisted, f"docker/README.md's file table leaves out {unlisted}"


REPO_DIRS = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")}
DOCKER_NAMES = {p.name for p in DOCKER.iterdir()}


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_path_named_exists(readme: Path) -> None:
    """A path in backticks that starts with a directory of the repository (or, in
    docker/README.md, one of docker/'s names) names a shipped file: it must be there."""
    missing = []
    for code in backticked(text(readme)):
        for word in code.split():
            m = re.fullmatch(r"([\w.-]+)(/[\w.*<>-]*)*", word.rstrip(",."))
            if not m or ("/" not in word and word not in DOCKER_NAMES):
                continue
            first = word.split("/", 1)[0]
            if first in REPO_DIRS:
                base = REPO
            elif readme == DOCKER_README and first in DOCKER_NAMES:
                base = DOCKER
            else:
                continue  # a path inside /etc/xroad and the like
            if "<" in word or "*" in word:
                continue
            if not (base / word.rstrip(",.")).exists():
                missing.append(word)
    assert not missing, f"{readme.relative_to(REPO)} names paths that do not exist: {missing}"


def shipped_text() -> str:
    parts = []
    for tree in SHIPPED_TREES:
        for p in tree.rglob("*"):
            if p.is_file() and p.suffix not in (".pyc", ".md") and "__pycache__" not in p.parts:
                parts.append(p.read_text(errors="replace"))
    return "\n".join(parts)


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_container_path_named_is_in_the_shipped_files(readme: Path) -> None:
    """An absolute path in backticks is set somewhere in the shipped files (a Dockerfile, a
    manifest, a config, the stand-in base, the agent's defaults), word for word."""
    shipped = shipped_text()
    words = set(re.findall(r"(?<![\w.-])(/[\w./-]+)", shipped))
    known = {norm(w) for w in words} | {norm(str(Path(w).parent)) for w in words}
    missing = []
    for code in backticked(text(readme)):
        for word in code.split():
            if not word.startswith("/") or word in ("/",):
                continue
            path = norm(word.rstrip(",.").removesuffix("..."))
            if path.startswith(("/healthz", "/readyz", "/metrics", "/status")):
                continue  # HTTP paths
            if path not in known and path not in NOT_SHIPPED and path not in MADE_AT_RUN_TIME:
                missing.append(path)
    assert not missing, f"{readme.relative_to(REPO)} names paths no shipped file has: {missing}"
    for path in NOT_SHIPPED:
        assert path not in known, f"{path} is shipped now: drop it from NOT_SHIPPED"


# ---- Secrets, volumes, mount points -------------------------------------------------------


def manifest_volumes() -> set[tuple[str, str, str, str]]:
    """(pod role, volume, source, mount) for every volume and env Secret of the manifests."""
    out = set()
    for doc in workloads():
        spec = pod_spec(doc)
        (c,) = spec["containers"]
        mounts = {m["name"]: norm(m["mountPath"]) for m in c.get("volumeMounts", [])}
        for v in spec.get("volumes", []):
            if "secret" in v:
                source = f"Secret {v['secret']['secretName']}"
            elif "persistentVolumeClaim" in v:
                source = f"PersistentVolumeClaim {v['persistentVolumeClaim']['claimName']}"
            else:
                source = next(k for k in v if k != "name")
            out.add((role(doc), v["name"], source, mounts[v["name"]]))
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                out.add((role(doc), "(env)", f"Secret {ref['name']}", "env"))
        for e in c.get("envFrom", []):
            if "secretRef" in e:
                out.add((role(doc), "(env)", f"Secret {e['secretRef']['name']}", "envFrom"))
    return out


def test_the_volume_table_is_the_manifests_volumes() -> None:
    documented = set()
    for pod, volume, source, mount in table(text(DOCKER_README), "pod"):
        kind, _, name = source.partition(" ")
        (mount_code,) = codes(mount)
        documented.add((pod, volume.strip("`"), f"{kind} {codes(name)[0]}", norm(mount_code)))
    assert documented == manifest_volumes()


def script_secrets() -> set[str]:
    return set(re.findall(r'echo "  name: (secret-[\w-]+)"', text(HOST_KEYS_SCRIPT)))


def manifest_secrets() -> set[str]:
    return {s.split()[1] for _, _, s, _ in manifest_volumes() if s.startswith("Secret ")}


def test_every_secret_named_is_one_the_manifests_or_the_script_use_and_back() -> None:
    volume_names = {v for _, v, _, _ in manifest_volumes()}
    named = {
        w
        for readme in READMES
        for code in backticked(text(readme))
        for w in re.findall(r"\bsecret-[a-z0-9-]*[a-z0-9]\b", code)
    } - volume_names
    assert script_secrets() == {"secret-primary-host-keys", "secret-primary-known-hosts"}
    assert script_secrets() <= manifest_secrets()
    assert named == manifest_secrets(), "docker/README.md's Secrets differ from the manifests'"


def test_every_mount_point_is_named_with_its_secret() -> None:
    """Each mount point appears in the prose too (not only in the table), so a moved mount is
    caught wherever the docs explain it."""
    prose = text(DOCKER_README)
    for *_, mount in manifest_volumes():
        if mount.startswith("/"):
            assert f"`{mount}/`" in prose or f"`{mount}`" in prose, mount


# ---- ports ----------------------------------------------------------------------------------


def manifest_ports() -> set[tuple[int, str]]:
    return {
        (p["containerPort"], role(doc))
        for doc in workloads()
        for c in pod_spec(doc)["containers"]
        for p in c.get("ports", [])
    }


def test_the_port_table_is_the_manifests_ports() -> None:
    documented = {(int(port), pod) for port, pod, _ in table(text(DOCKER_README), "port")}
    assert documented == manifest_ports()
    exposed = {
        int(p)
        for f in (DOCKER / "Dockerfile", DOCKER / "Dockerfile.primary")
        for p in re.findall(r"^EXPOSE (\d+)$", text(f), re.M)
    }
    assert exposed <= {p for p, _ in documented}


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_port_mentioned_is_a_shipped_port(readme: Path) -> None:
    ports = {p for p, _ in manifest_ports()}
    mentioned = {
        int(p)
        for p in re.findall(r"(?:\bports?\s+|:)(\d{2,5})\b(?!\.\d)", text(readme))
        if not p.startswith("0")
    }
    assert mentioned <= ports, f"{readme.relative_to(REPO)}: {sorted(mentioned - ports)}"


# ---- alerts ---------------------------------------------------------------------------------


def shipped_alerts() -> set[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {r["alert"] for g in rules["groups"] for r in g["rules"]}


def test_the_alert_table_is_the_rules() -> None:
    documented = {codes(row[0])[0] for row in table(text(DOCKER_README), "alert")}
    assert documented == shipped_alerts()
    rules = yaml.safe_load(ALERTS.read_text())
    fors = {r["alert"]: r["for"] for g in rules["groups"] for r in g["rules"]}
    for row in table(text(DOCKER_README), "alert"):
        assert row[2] == fors[codes(row[0])[0]], row


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_alert_named_exists(readme: Path) -> None:
    named = set(re.findall(r"\bXRoad[A-Z]\w+", text(readme)))
    assert named <= shipped_alerts(), named - shipped_alerts()


# ---- the podman run -------------------------------------------------------------------------


def test_the_adaptations_listed_are_the_harnesss() -> None:
    rows = table(text(DOCKER_README), "adaptation")
    assert {row[0] for row in rows} == set(ADAPTATIONS)
    for key, why in rows:
        assert why == ADAPTATIONS[key], key


def test_what_podman_does_not_have_is_listed_as_not_tested() -> None:
    md = text(DOCKER_README)
    section = md[md.index("### Not tested here") :]
    for behaviour in ("controllers", "readiness", "liveness", "rolling updates", "Services"):
        assert behaviour in section, behaviour
