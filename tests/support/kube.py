"""The shipped Kubernetes manifests made playable by podman 4.3 (``podman kube play``), and the
kubelet's way of updating a Secret volume.

``adapt`` takes a workload document as shipped (docker/kubernetes/*.yaml, read fresh by every
run: there is no hand-kept copy) and applies exactly the changes in ``ADAPTATIONS``, each one
because podman 4.3 cannot take the field as Kubernetes defines it. Nothing else in the
document changes: images, env, mounts, probes' paths, resources stay as shipped. docker/README.md
lists the same adaptations (tests/deploy/test_docs.py holds the two lists together).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# key -> what the harness does, and why podman 4.3 needs it
ADAPTATIONS = {
    "secret volumes": (
        "each Secret volume becomes a hostPath directory laid out as the kubelet lays out a "
        "Secret volume (`..data` pointing at a timestamped directory, one symlink per item, "
        "items' paths and modes, `defaultMode`, a world-writable sticky root): podman 4.3 "
        "panics on a Secret volume without `optional`, writes the base64 text as the files' "
        "content, and ignores `items` and modes"
    ),
    "env secrets": (
        "each Secret read by env (`secretKeyRef`, `envFrom`) becomes a podman secret of the "
        "same name holding the Secret's data as JSON, the form podman 4.3 reads for env"
    ),
    "ports": (
        "`ports` dropped: podman 4.3 publishes every `containerPort` on the same port of the "
        "host, on all its addresses (the two secondaries would collide on each port)"
    ),
    "probe ports": (
        "named probe ports resolved to their numbers from the dropped `ports`: podman 4.3 "
        "turns a port name into port 0"
    ),
    "services": (
        "each Service becomes a network alias (`--network NET:alias=NAME`) of the pods its "
        "selector matches: podman has no Services; its DNS answers the alias as a headless "
        "Service's answers the name"
    ),
}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def pod_labels(doc: Mapping[str, Any]) -> dict[str, str]:
    meta = doc["metadata"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"]
    return dict(meta.get("labels", {}))


# ---- Secret volumes, as the kubelet writes them ---------------------------------------------


class SecretVolume:
    """A directory laid out, and updated, as the kubelet's atomic writer lays out a Secret
    volume: the payload in ``..<timestamp>/``, ``..data`` -> that directory, and one symlink per
    top-level name -> ``..data/<name>``. An update writes a new timestamped directory, points a
    new ``..data_tmp`` at it, renames that over ``..data`` (the one atomic step), adds symlinks for
    new names, drops those of removed names and deletes the old directory: a reader sees the
    old payload or the new one, never a mix."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o755)
        root.chmod(0o1777)  # the kubelet's tmpfs mount: world-writable, sticky

    def payload_dir(self) -> str | None:
        data = self.root / "..data"
        return os.readlink(data) if data.is_symlink() else None

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if not p.name.startswith("..")}

    def write(self, files: Mapping[str, tuple[bytes, int]]) -> None:
        """Make ``files`` (relative path -> (bytes, mode)) the volume's content."""
        old = self.payload_dir()
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        new = Path(tempfile.mkdtemp(prefix=stamp, dir=self.root))
        new.chmod(0o755)
        for rel, (content, mode) in files.items():
            target = new / rel
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
        tmp = self.root / "..data_tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(new.name)
        tmp.rename(self.root / "..data")
        wanted = {rel.split("/", 1)[0] for rel in files}
        for name in wanted - self.names():
            (self.root / name).symlink_to(f"..data/{name}")
        for name in self.names() - wanted:
            (self.root / name).unlink()
        if old:
            shutil.rmtree(self.root / old)

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


def secret_files(
    data: Mapping[str, bytes], source: Mapping[str, Any]
) -> dict[str, tuple[bytes, int]]:
    """What a Secret volume holds: the items it selects under their paths (all keys when it
    selects none), each with its item mode, else ``defaultMode``, else 0644."""
    default = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    if items:
        return {i["path"]: (data[i["key"]], int(i.get("mode", default))) for i in items}
    return {key: (value, default) for key, value in data.items()}


# ---- a workload document made playable ------------------------------------------------------


@dataclass
class Playable:
    """One workload document (Pod or Deployment) as the harness hands it to podman."""

    doc: dict[str, Any]
    volumes: dict[str, SecretVolume] = field(default_factory=dict)  # volume name -> directory
    env_secrets: set[str] = field(default_factory=set)  # podman secrets it reads
    aliases: list[str] = field(default_factory=list)  # Service names that select its pods
    applied: set[str] = field(default_factory=set)  # which ADAPTATIONS it needed

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def network(self, net: str) -> str:
        """``podman kube play --network`` for it: the network, and its Services' names."""
        options = ",".join(f"alias={a}" for a in self.aliases)
        return f"{net}:{options}" if options else net

    def write(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        return path


def adapt(
    doc: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, bytes]],
    services: Iterable[Mapping[str, Any]],
    area: Path,
) -> Playable:
    """``doc`` with ``ADAPTATIONS`` applied, its Secret volumes laid out under ``area``."""
    out = Playable(copy.deepcopy(dict(doc)))
    spec = pod_spec(out.doc)
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            source = volume.pop("secret")
            sv = SecretVolume(area / f"{out.name}.{volume['name']}")
            sv.write(secret_files(secrets[source["secretName"]], source))
            volume["hostPath"] = {"path": str(sv.root), "type": "Directory"}
            out.volumes[volume["name"]] = sv
            out.applied.add("secret volumes")
    for container in spec["containers"]:
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
        if container.pop("ports", None):
            out.applied.add("ports")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind, {})
            for handler in ("httpGet", "tcpSocket"):
                if isinstance(probe.get(handler, {}).get("port"), str):
                    probe[handler]["port"] = ports[probe[handler]["port"]]
                    out.applied.add("probe ports")
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                out.env_secrets.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                out.env_secrets.add(source["secretRef"]["name"])
    if out.env_secrets:
        out.applied.add("env secrets")
    labels = pod_labels(out.doc)
    for svc in services:
        selector = svc["spec"].get("selector") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            out.aliases.append(svc["metadata"]["name"])
            out.applied.add("services")
    return out


def env_secret_json(data: Mapping[str, bytes]) -> str:
    """A Secret's data in the form podman 4.3 reads for env: a JSON object of base64 values."""
    return json.dumps({k: base64.b64encode(v).decode() for k, v in data.items()})


def secret_data(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret document's data, decoded (``data`` is base64, ``stringData`` plain)."""
    out = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (doc.get("stringData") or {}).items()})
    return out
