"""Deployment files checked with the real tools: systemd-analyze, promtool, yamllint,
kubernetes-validate, hadolint, shellcheck, sshd; plus the image's shell scripts run against stubs.

The Dockerfile is linted here; tests/deploy/test_image.py builds and runs it with podman.
Tests that need the running daemon (supervisord + sshd, notify/watchdog, Prometheus scraping)
live elsewhere.
"""

from __future__ import annotations

import base64
import importlib.resources
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import REPO
from support.tools import require_tool

from syncagent.daemon.metrics import Metrics
from syncagent.daemon.status import DaemonState
from syncagent.publish.port import PublisherState, PublishMetrics

ROOT = REPO
SYSTEMD = ROOT / "systemd"
DOCKER = ROOT / "docker"
K8S = DOCKER / "kubernetes"
PROM = DOCKER / "prometheus"
UNIT = SYSTEMD / "syncagent.service"
PUBLISH_UNIT = SYSTEMD / "syncagent-publish.service"
ENTRYPOINT = DOCKER / "syncagent-entrypoint.sh"
STRIP = DOCKER / "strip_first_sync.py"
STANDIN_SCRIPTS = (
    DOCKER / "standin" / "rootfs" / "root" / "entrypoint.sh",
    DOCKER / "standin" / "rootfs" / "usr" / "share" / "xroad" / "scripts" / "xroad-base.sh",
    DOCKER / "standin" / "rootfs-primary" / "root" / "entrypoint.sh",
)
HOST_KEYS_SCRIPT = K8S / "make-host-key-secrets.sh"
MANIFESTS = sorted(K8S.glob("*.yaml"))
SSHD_DROPIN = DOCKER / "sshd" / "xroad-sync.conf"
DOCKERFILES = (DOCKER / "Dockerfile", DOCKER / "Dockerfile.primary")
OLDEST_KUBERNETES = (1, 28)  # the oldest minor sidecar users run


def tool(name: str) -> str:
    """A tool from PATH, or from the venv this test runs in (pip-installed linters)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_tool(name)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# --- systemd -------------------------------------------------------------------------------


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at a binary that exists here (verify checks it)."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/syncagent/bin/syncagent " in text
    copy = tmp_path / "syncagent.service"
    copy.write_text(
        text.replace(
            "ExecStart=/opt/syncagent/bin/syncagent ",
            f"ExecStart={shutil.which('true') or '/bin/true'} ",
        )
    )
    return copy


def test_systemd_verify_is_clean(unit_copy: Path) -> None:
    res = run(require_tool("systemd-analyze"), "verify", unit_copy)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


def test_systemd_security_exposure_ok(
    unit_copy: Path, record_property: Callable[[str, object], None]
) -> None:
    res = run(require_tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", unit_copy)
    assert res.returncode == 0, res.stderr
    m = re.search(r"Overall exposure level for syncagent\.service: (\d+\.\d+) (\w+)", res.stdout)
    assert m, res.stdout[-2000:]
    exposure = float(m.group(1))
    record_property("systemd_security_exposure", exposure)
    print(f"systemd-analyze security exposure: {exposure} {m.group(2)}")
    assert exposure <= 2.0, res.stdout
    assert m.group(2) == "OK"


def test_publisher_unit_verifies_and_is_sandboxed_tighter_than_the_agent(
    tmp_path: Path,
) -> None:
    """The IG-XLB primary's publisher: it reads /etc/xroad and writes its publish dir only, and
    talks to nobody, so it can drop the network the agent needs."""
    text = PUBLISH_UNIT.read_text()
    exec_start = "ExecStart=/opt/syncagent/bin/syncagent --config /etc/syncagent/syncagent.toml"
    assert f"\n{exec_start} publish\n" in text
    for line in (
        "User=xroad",
        "PrivateNetwork=yes",
        "RestrictAddressFamilies=AF_UNIX",
        "StateDirectory=syncagent syncagent/publish",
        "StateDirectoryMode=0750",
        "RestartPreventExitStatus=2",
        "ProtectSystem=strict",
    ):
        assert f"\n{line}\n" in text, line
    copy = tmp_path / "syncagent-publish.service"
    copy.write_text(
        text.replace(
            "ExecStart=/opt/syncagent/bin/syncagent ",
            f"ExecStart={shutil.which('true') or '/bin/true'} ",
        )
    )
    analyze = require_tool("systemd-analyze")
    res = run(analyze, "verify", copy)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    res = run(analyze, "security", "--offline=yes", "--no-pager", copy)
    m = re.search(
        r"Overall exposure level for syncagent-publish\.service: (\d+\.\d+) (\w+)", res.stdout
    )
    assert m, res.stdout[-2000:]
    assert float(m.group(1)) <= 0.5 and m.group(2) == "SAFE", res.stdout[-2000:]


def test_unit_keeps_the_old_units_contract() -> None:
    text = UNIT.read_text()
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            settings.setdefault(k, []).append(v)
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == [
        "/opt/syncagent/bin/syncagent --config /etc/syncagent/syncagent.toml run"
    ]
    assert settings["User"] == ["xroad"] and settings["Group"] == ["xroad"]
    assert settings["Restart"] == ["on-failure"]
    assert "WatchdogSec" in settings
    before = " ".join(settings["Before"]).split()
    for svc in ("xroad-proxy", "xroad-signer", "xroad-confclient", "xroad-proxy-ui-api"):
        assert f"{svc}.service" in before
    assert settings["ReadWritePaths"] == ["/etc/xroad"]
    # PrivateTmp hides the host's /var/tmp: the host's is bound back in (read-only, elsewhere)
    # for the IG-XLB pause flag.
    assert settings["PrivateTmp"] == ["yes"]
    assert settings["BindReadOnlyPaths"] == ["/var/tmp:/run/syncagent/host-var-tmp"]
    assert settings["CapabilityBoundingSet"] == [""]


# --- example configs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,profile",
    [
        (SYSTEMD / "syncagent.toml", "xlb"),
        (DOCKER / "syncagent.toml", "sidecar"),
    ],
)
def test_example_config_loads(path: Path, profile: str) -> None:
    from syncagent import settings

    s, problems = settings.load(path, env={"XROAD_PRIMARY_DNS": "primary.test"})
    assert problems == []
    assert s is not None
    assert s.sync.profile == profile
    assert s.primary.host_key_policy == "strict"
    assert s.primary.known_hosts


# --- Prometheus ----------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    res = run(require_tool("promtool"), "check", "rules", PROM / "syncagent-alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules() -> None:
    res = run(require_tool("promtool"), "test", "rules", PROM / "syncagent-alerts.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def agent_metrics() -> set[str]:
    """Every series name the agent and the publisher export, read off their own registries."""
    text = Metrics(DaemonState()).render().decode()
    text += PublishMetrics(PublisherState()).render().decode()
    return {
        name
        for family in text_string_to_metric_families(text)
        for name in (family.name, *(s.name for s in family.samples))
    }


def test_alerts_use_only_metrics_the_agent_exports() -> None:
    rules = yaml_docs(PROM / "syncagent-alerts.yml")[0]
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bsyncagent_\w+", e)}
    assert used and used <= agent_metrics(), used - agent_metrics()
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for t_group in yaml_docs(PROM / "syncagent-alerts.test.yml")[0]["tests"]
        for t in t_group["alert_rule_test"]
    }
    assert alerts == tested


# --- YAML and Kubernetes -------------------------------------------------------------------


def test_yamllint_strict() -> None:
    res = run(tool("yamllint"), "-s", "-f", "parsable", "-c", DOCKER / ".yamllint", DOCKER)
    assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr


def schema_versions() -> list[str]:
    """Every Kubernetes minor from OLDEST_KUBERNETES to the newest whose OpenAPI schemas
    kubernetes-validate carries (offline, in the package)."""
    schemas = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    minors = {
        (int(m.group(1)), int(m.group(2)))
        for d in schemas.iterdir()
        if (m := re.match(r"v(\d+)\.(\d+)\.\d+-local-strict$", d.name))
    }
    return [f"{a}.{b}" for a, b in sorted(minors) if (a, b) >= OLDEST_KUBERNETES]


@pytest.fixture(scope="module")
def generated_secrets(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The two Secrets make-host-key-secrets.sh writes: shipped too, as the script's output."""
    require_tool("ssh-keygen")
    out = tmp_path_factory.mktemp("secrets")
    res = run("bash", HOST_KEYS_SCRIPT, out)
    assert res.returncode == 0, res.stderr
    return sorted(out.glob("*.yaml"))


def test_schema_versions_span_the_supported_range() -> None:
    versions = schema_versions()
    assert versions[0] == "1.28", versions
    minors = [int(v.split(".")[1]) for v in versions]
    assert minors == list(range(minors[0], minors[-1] + 1)), "a minor is missing"
    assert minors[-1] >= 33, versions  # the locked kubernetes-validate carries 1.37


@pytest.mark.parametrize("version", schema_versions())
def test_manifests_validate_against_the_kubernetes_schemas(
    version: str, generated_secrets: list[Path]
) -> None:
    """Every shipped manifest, and the Secrets the shipped script makes, against the official
    OpenAPI schemas of ``version``, strictly (unknown fields fail)."""
    files = [*MANIFESTS, *generated_secrets]
    assert MANIFESTS
    res = run(tool("kubernetes-validate"), "--strict", "-k", f"{version}.0", *files)
    assert res.returncode == 0, res.stdout + res.stderr
    resources = sum(len(yaml_docs(f)) for f in files)
    assert res.stdout.count(f" against version {version}\n") == resources, res.stdout
    assert res.stdout.count(" passed for resource ") == resources, res.stdout


def test_kubernetes_validate_is_really_strict(tmp_path: Path) -> None:
    """Negative control: an unknown field must fail, or the test above proves nothing."""
    doc = yaml_docs(K8S / "secondary-deployment.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    res = run(tool("kubernetes-validate"), "--strict", bad)
    assert res.returncode != 0


def _container() -> dict[str, Any]:
    deployment = yaml_docs(K8S / "secondary-deployment.yaml")[0]
    return cast("dict[str, Any]", deployment["spec"]["template"]["spec"]["containers"][0])


def test_secondary_probes_fit_the_agent_and_the_budget() -> None:
    c = _container()
    env = {e["name"]: e.get("value") for e in c["env"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    image_cfg = tomllib.loads((DOCKER / "syncagent.toml").read_text())
    listen = env.get("SYNCAGENT_HTTP_LISTEN") or image_cfg["http"]["listen"]
    assert ports["syncagent"] == int(listen.rpartition(":")[2])
    assert {c[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")} == {"/healthz"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for p in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[p]["httpGet"]["port"] == "syncagent"
    # Startup covers the first-sync budget, one last try (<= 30 s + 5 s kill), and start-up.
    startup = c["startupProbe"]
    budget = int(env["SYNCAGENT_FIRST_SYNC_BUDGET"])
    assert budget + 35 + 60 <= startup["periodSeconds"] * startup["failureThreshold"]
    assert env["SYNCAGENT_HTTP_UPSTREAM_HEALTH_URL"] == "http://127.0.0.1:5588/"
    ann = yaml_docs(K8S / "secondary-deployment.yaml")[0]["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == ports["syncagent"]


def test_secondary_mounts_match_the_image_config() -> None:
    c = _container()
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in c["volumeMounts"]}
    cfg = tomllib.loads((DOCKER / "syncagent.toml").read_text())["primary"]
    assert str(Path(cfg["identity_file"]).parent) == mounts["secret-ssh-sidecar"] == "/etc/.ssh"
    assert str(Path(cfg["known_hosts"]).parent) == mounts["primary-known-hosts"]
    volumes = {
        v["name"]: v
        for v in yaml_docs(K8S / "secondary-deployment.yaml")[0]["spec"]["template"]["spec"][
            "volumes"
        ]
    }
    assert volumes["primary-known-hosts"]["secret"]["secretName"] == "secret-primary-known-hosts"
    assert {i["path"] for i in volumes["secret-ssh-sidecar"]["secret"]["items"]} >= {"id_rsa"}


def test_primary_mounts_are_where_the_image_looks() -> None:
    """The drop-in's HostKey files and its key command read the primary Pod's Secret mounts,
    and the primary image installs the drop-in where sshd includes it."""
    dropin = SSHD_DROPIN.read_text()
    pod = yaml_docs(K8S / "primary-pod.yaml")[1]
    assert pod["kind"] == "Pod"
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    keydir = mounts["primary-host-keys"]["mountPath"].rstrip("/")
    hostkeys = re.findall(r"^HostKey (\S+)$", dropin, re.M)
    assert hostkeys and all(str(Path(h).parent) == keydir for h in hostkeys)
    assert volumes["primary-host-keys"]["secret"]["secretName"] == "secret-primary-host-keys"
    assert volumes["primary-host-keys"]["secret"]["defaultMode"] == 0o400
    assert "subPath" not in mounts["primary-host-keys"], "a subPath mount never sees rotation"
    assert "fsGroup" not in pod["spec"].get("securityContext", {})
    (command,) = re.findall(r"^\s+AuthorizedKeysCommand (\S+) (\S+)$", dropin, re.M)
    items = volumes["secret-ssh-sidecar"]["secret"]["items"]
    assert command[1] == mounts["secret-ssh-sidecar"]["mountPath"].rstrip("/") + "/" + next(
        i["path"] for i in items if i["key"] == "public-key"
    )
    assert (
        "COPY docker/sshd/xroad-sync.conf /etc/ssh/sshd_config.d/xroad-sync.conf"
        in (DOCKER / "Dockerfile.primary").read_text()
    )
    # the Service the secondaries reach selects this Pod
    service = yaml_docs(K8S / "primary-pod.yaml")[0]
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    env = {e["name"]: e.get("value") for e in _container()["env"]}
    assert env["XROAD_PRIMARY_DNS"] == service["metadata"]["name"]


def test_primary_image_config_publishes_where_secondaries_look() -> None:
    """The primary image's publisher writes where a secondary looks by default
    (primary.publish_dir = auto), serves the port the Pod declares and Prometheus scrapes,
    and publishes the profile the secondaries sync."""
    from syncagent import settings

    s, problems = settings.load(DOCKER / "syncagent-primary.toml", env={}, needs_primary=False)
    assert problems == [] and s is not None
    secondary, problems = settings.load(
        DOCKER / "syncagent.toml", env={"XROAD_PRIMARY_DNS": "primary.test"}
    )
    assert problems == [] and secondary is not None
    assert secondary.primary.publish_dir == "auto"
    assert str(s.publish.dir) == secondary.primary.published_root
    assert s.sync.profile == secondary.sync.profile == "sidecar"
    assert s.publish.source == secondary.sync.target
    pod = yaml_docs(K8S / "primary-pod.yaml")[1]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    port = int(s.publish.listen.rpartition(":")[2])
    assert ports["publisher"] == port == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert f"EXPOSE {port}" in (DOCKER / "Dockerfile.primary").read_text()


# --- primary host keys and sshd ------------------------------------------------------------


def _secret_data(path: Path) -> dict[str, bytes]:
    doc = yaml_docs(path)[0]
    return {k: base64.b64decode(v) for k, v in doc["data"].items()}


def test_host_key_secrets_script(tmp_path: Path) -> None:
    require_tool("ssh-keygen")
    out = tmp_path / "out"
    res = run("bash", HOST_KEYS_SCRIPT, "-n", "xr", "-s", "primary-svc", out)
    assert res.returncode == 0, res.stderr
    host_keys = out / "secret-primary-host-keys.yaml"
    known = out / "secret-primary-known-hosts.yaml"
    res = run(tool("kubernetes-validate"), "--strict", host_keys, known)
    assert res.returncode == 0, res.stdout + res.stderr
    assert oct(host_keys.stat().st_mode & 0o777) == "0o600"  # holds private keys

    keys = _secret_data(host_keys)
    assert set(keys) == {
        f"ssh_host_{t}_key{s}" for t in ("ed25519", "ecdsa", "rsa") for s in ("", ".pub")
    }
    lines = _secret_data(known)["known_hosts"].decode().splitlines()
    assert len(lines) == 3
    for line in lines:
        hosts, keytype, keydata = line.split()
        assert hosts.split(",") == [
            "primary-svc",
            "primary-svc.xr",
            "primary-svc.xr.svc",
            "primary-svc.xr.svc.cluster.local",
        ]
        # Each line is the public half of a private key in the primary's Secret.
        assert any(
            keys[f].split()[:2] == [keytype.encode(), keydata.encode()]
            for f in keys
            if f.endswith(".pub")
        )
    (tmp_path / "known_hosts").write_text("\n".join(lines) + "\n")
    for name in ("primary-svc", "primary-svc.xr.svc.cluster.local"):
        found = run("ssh-keygen", "-F", name, "-f", tmp_path / "known_hosts")
        assert found.returncode == 0 and found.stdout.count(name) >= 3


def test_host_key_secrets_script_adopts_existing_keys(tmp_path: Path) -> None:
    """-k takes the primary's current keys (no change for clients), generating missing types."""
    keygen = require_tool("ssh-keygen")
    keydir = tmp_path / "keys"
    keydir.mkdir()
    for t in ("ed25519", "rsa"):
        run(keygen, "-q", "-t", t, "-N", "", "-f", keydir / f"ssh_host_{t}_key").check_returncode()
    res = run("bash", HOST_KEYS_SCRIPT, "-k", keydir, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "generating a new ecdsa key" in res.stderr
    keys = _secret_data(tmp_path / "out" / "secret-primary-host-keys.yaml")
    for t in ("ed25519", "rsa"):
        assert keys[f"ssh_host_{t}_key"] == (keydir / f"ssh_host_{t}_key").read_bytes()
        mine = (keydir / f"ssh_host_{t}_key.pub").read_text().split()[:2]
        assert keys[f"ssh_host_{t}_key.pub"].decode().split()[:2] == mine
    assert keys["ssh_host_ecdsa_key.pub"].startswith(b"ecdsa-sha2-")


def test_primary_sshd_dropin_with_real_sshd(tmp_path: Path) -> None:
    """The drop-in parses, loads the Secret's keys, and confines xroad-slave only."""
    sshd = require_tool("sshd")
    if not Path("/run/sshd").is_dir():
        if os.geteuid() != 0:
            pytest.skip("sshd -t needs /run/sshd (privilege separation directory)")
        Path("/run/sshd").mkdir(mode=0o755)
    keydir = tmp_path / "keys"
    keydir.mkdir()
    for t in ("ed25519", "ecdsa", "rsa"):
        run(
            "ssh-keygen", "-q", "-t", t, "-N", "", "-f", keydir / f"ssh_host_{t}_key"
        ).check_returncode()
    dropin = SSHD_DROPIN.read_text()
    confd = tmp_path / "sshd_config.d"
    confd.mkdir()
    (confd / "xroad-sync.conf").write_text(dropin.replace("/etc/ssh/xroad-host-keys", str(keydir)))
    # As Ubuntu's sshd_config: drop-ins first, then the image's own settings.
    main = tmp_path / "sshd_config"
    main.write_text(f"Include {confd}/*.conf\nPasswordAuthentication yes\nUsePAM no\n")
    res = run(sshd, "-t", "-f", main)
    assert res.returncode == 0, res.stderr

    def effective(user: str) -> dict[str, list[str]]:
        res = run(sshd, "-T", "-f", main, "-C", f"user={user},host=h,addr=127.0.0.1")
        assert res.returncode == 0, res.stderr
        out: dict[str, list[str]] = {}
        for line in res.stdout.splitlines():
            k, _, v = line.partition(" ")
            out.setdefault(k, []).append(v)
        return out

    slave = effective("xroad-slave")
    assert slave["forcecommand"] == ["internal-sftp -R -d /etc/xroad"]
    for key in (
        "permittty",
        "allowtcpforwarding",
        "allowagentforwarding",
        "allowstreamlocalforwarding",
        "x11forwarding",
        "permittunnel",
    ):
        assert slave[key] == ["no"], key
    assert slave["authenticationmethods"] == ["publickey"]
    # the key by command, not by file: the Secret's mount directory is world-writable
    assert slave["authorizedkeysfile"] == ["none"]
    assert slave["authorizedkeyscommand"] == ["/usr/bin/cat /etc/.ssh/id_rsa.pub"]
    assert slave["authorizedkeyscommanduser"] == ["nobody"]
    assert sorted(slave["hostkey"]) == sorted(
        str(keydir / f"ssh_host_{t}_key") for t in ("ed25519", "ecdsa", "rsa")
    )
    # The Match block ends with the drop-in: other users and later settings are untouched.
    other = effective("admin")
    assert other["forcecommand"] == ["none"]
    assert other["authorizedkeysfile"] == [".ssh/authorized_keys .ssh/authorized_keys2"]
    assert other["permittty"] == ["yes"]
    assert other["passwordauthentication"] == ["yes"]


# --- Dockerfile, supervisord program, shell scripts ----------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_dockerfile(dockerfile: Path) -> None:
    res = run(tool("hadolint"), dockerfile)
    assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr


def copied_from_context(dockerfile: Path) -> list[str]:
    return [
        item
        for line in re.findall(r"^COPY (.+)$", dockerfile.read_text(), re.M)
        if "--from=" not in line
        for item in line.split()[:-1]
        if not item.startswith("--")
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_its_dockerignore_lets_through(dockerfile: Path) -> None:
    """Everything COPY'd from the context is let through by the Dockerfile's own .dockerignore."""
    ignore = Path(f"{dockerfile}.dockerignore").read_text().split()
    copied = copied_from_context(dockerfile)
    assert "syncagent" in copied
    for item in copied:
        assert (ROOT / item).exists() or item == "README.md", item  # README: another change
        allowed = {f"!{item}", f"!{item}/"} | {f"!{d}/" for d in Path(item).parents}
        assert allowed & set(ignore), item


def test_dockerfile_contract() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=niis/xroad-security-server-sidecar:[\w.]+-secondary$", text, re.M)
    # --existing=section: a base without [program:cron] (not a secondary) fails the build
    assert "crudini --existing=section --del /etc/supervisor/conf.d/xroad.conf program:cron" in text
    assert "rm -f /etc/cron.d/xroad-state-sync" in text
    assert 'CMD ["/usr/local/bin/syncagent-entrypoint"]' in text
    assert "docker/syncagent-entrypoint.sh" in copied_from_context(DOCKER / "Dockerfile")


def test_primary_dockerfile_contract() -> None:
    """The primary image: FROM a primary tag, the agent built exactly as for the secondary
    (same locked, hash-checked install), the publisher's program, the drop-in, the base's own
    entrypoint kept (no CMD of ours)."""
    text = (DOCKER / "Dockerfile.primary").read_text()
    assert re.search(r"^ARG BASE=niis/xroad-security-server-sidecar:[\w.]+-primary$", text, re.M)

    def venv_step(t: str) -> str:
        m = re.search(r"^RUN python3 -m venv /opt/syncagent .*?(?=\n\n)", t, re.M | re.S)
        assert m, "the venv step"
        return m.group(0)

    assert venv_step(text) == venv_step((DOCKER / "Dockerfile").read_text())
    copied = copied_from_context(DOCKER / "Dockerfile.primary")
    assert {
        "docker/syncagent-primary.toml",
        "docker/supervisor/syncagent-publish.conf",
        "docker/sshd/xroad-sync.conf",
    } <= set(copied)
    assert "CMD" not in re.findall(r"^(\w+)", text, re.M)
    assert "ENTRYPOINT" not in re.findall(r"^(\w+)", text, re.M)
    publish_dir = "/var/lib/syncagent /var/lib/syncagent/publish"
    assert f"install -d -o xroad -g xroad -m 0750 {publish_dir}" in text


def test_shellcheck_scripts() -> None:
    res = run(tool("shellcheck"), ENTRYPOINT, HOST_KEYS_SCRIPT, *STANDIN_SCRIPTS)
    assert res.returncode == 0, res.stdout + res.stderr


def test_supervisord_program_parses(tmp_path: Path) -> None:
    options = pytest.importorskip("supervisor.options")
    program = (DOCKER / "supervisor" / "xroad-sync.conf").read_text()
    try:
        pwd.getpwnam("xroad")
    except KeyError:  # the user is the image's; any existing one proves the syntax here
        program = program.replace("user=xroad", f"user={pwd.getpwuid(os.getuid()).pw_name}")
    (tmp_path / "xroad-sync.conf").write_text(program)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nnodaemon=true\n[include]\nfiles = {tmp_path}/xroad-sync.conf\n"
    )
    opts = options.ServerOptions()
    opts.realize(args=["-c", str(conf)])
    (group,) = opts.process_group_configs
    (proc,) = group.process_configs
    assert proc.name == "xroad-sync"
    assert proc.command == "/opt/syncagent/bin/syncagent run"
    assert proc.stopsignal == signal.SIGTERM
    assert proc.autorestart is not False
    assert proc.stdout_logfile == "/dev/stdout" and proc.stdout_logfile_maxbytes == 0
    assert proc.redirect_stderr


# strip_first_sync.py: shapes the sidecar's secondary entrypoint has had (written for these
# tests, not copied): a RSYNC_CMD retry loop plus cron file, an RC loop, a one-line until. It
# deletes whole lines and inserts nothing. (tests/deploy/test_entrypoint_edit.py has the
# released shapes and adversarial ones as fixtures.)
SUPERVISORD = "exec /usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf\n"
SHAPE_CMD_LOOP = (
    """#!/bin/bash
log() { echo "$*"; }
chown -R xroad:xroad /etc/xroad
log "Syncing configuration from ${XROAD_PRIMARY_DNS}..."
RSYNC_CMD="rsync -e 'ssh -i /etc/.ssh/id_rsa' -az xroad-slave@${PRIMARY}:/etc/xroad/ /etc/xroad/"
set -o pipefail
while :; do
  su -c "$RSYNC_CMD" xroad |& sed 's/^/    /' && break
  sleep 5 || exit 1
done
echo "* * * * * xroad $RSYNC_CMD 2>&1" > /etc/cron.d/xroad-state-sync
chown root:root /etc/cron.d/xroad-state-sync && chmod 644 /etc/cron.d/xroad-state-sync
for g in a b; do echo "$g"; done
"""
    + SUPERVISORD,
    """#!/bin/bash
log() { echo "$*"; }
chown -R xroad:xroad /etc/xroad
log "Syncing configuration from ${XROAD_PRIMARY_DNS}..."
set -o pipefail
for g in a b; do echo "$g"; done
"""
    + SUPERVISORD,
)
SHAPE_RC_LOOP = (
    """#!/bin/bash
RC=1
while [[ $RC -ne 0 ]]
do
  sleep 5 || exit 1
  su -c "rsync -avz xroad-slave@${XROAD_PRIMARY_DNS}:/etc/xroad/ /etc/xroad/" xroad
  RC=$?
done
"""
    + SUPERVISORD,
    "#!/bin/bash\nRC=1\n" + SUPERVISORD,
)
SHAPE_UNTIL = (
    "#!/bin/bash\nuntil rsync -a primary:/etc/xroad/ /etc/xroad/; do sleep 5; done\n" + SUPERVISORD,
    "#!/bin/bash\n" + SUPERVISORD,
)


def strip(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(STRIP)], input=text, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("shape,expected", [SHAPE_CMD_LOOP, SHAPE_RC_LOOP, SHAPE_UNTIL])
def test_strip_first_sync_removes_rsync_keeps_the_rest(shape: str, expected: str) -> None:
    res = strip(shape)
    assert res.returncode == 0, res.stderr
    assert res.stdout == expected


def test_strip_first_sync_refuses_an_unknown_shape() -> None:
    res = strip(
        "#!/bin/bash\nif ! rsync -a p:/etc/xroad/ /etc/xroad/; then exit 1; fi\n"
        "exec supervisord -n\n"
    )
    assert res.returncode == 1
    assert "SYNCAGENT_EXEC" in res.stderr and res.stdout == ""
    assert res.stderr.startswith(
        "strip-first-sync: refusing: line 2: still names the rsync sync"
    ), res.stderr


def test_strip_first_sync_refuses_a_script_without_the_sync() -> None:
    """No first-sync loop: not a secondary's entrypoint (wrong BASE), so the build stops
    rather than pass it through (the comment and the unrelated loop are no sync)."""
    text = "#!/bin/bash\n# rsync was here\nwhile false; do :; done\nexec supervisord -n\n"
    res = strip(text)
    assert res.returncode == 1 and res.stdout == ""
    assert "no first-sync retry loop" in res.stderr and "SYNCAGENT_EXEC" in res.stderr


# syncagent-entrypoint.sh against a stub agent that exits with scripted codes.


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    script = tmp_path / "syncagent"
    script.write_text(
        "#!/bin/bash\n"
        'd=$(dirname "$0")\n'
        'n=$(( $(cat "$d/calls" 2>/dev/null || echo 0) + 1 ))\n'
        'echo "$n" > "$d/calls"\n'
        'echo "$*" >> "$d/args"\n'
        '[[ -f "$d/sleep" ]] && sleep "$(cat "$d/sleep")"\n'
        'code=$(sed -n "${n}p" "$d/codes")\n'
        'exit "${code:-$(tail -n1 "$d/codes")}"\n'
    )
    script.chmod(0o755)
    return script


def entrypoint(
    stub: Path, codes: list[int], *cmd: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], int]:
    (stub.parent / "codes").write_text("".join(f"{c}\n" for c in codes))
    full_env = {
        **os.environ,
        "SYNCAGENT_BIN": str(stub),
        "SYNCAGENT_RUN_AS": "",
        "SYNCAGENT_FIRST_SYNC_RETRY": "0",
        "SYNCAGENT_FIRST_SYNC_BUDGET": "60",
        **env,
    }
    res = subprocess.run(
        ["bash", str(ENTRYPOINT), *cmd], capture_output=True, text=True, env=full_env, timeout=60
    )
    calls_file = stub.parent / "calls"
    calls = int(calls_file.read_text()) if calls_file.exists() else 0
    return res, calls


START = ("/bin/echo", "SERVICES-STARTED")


def test_entrypoint_starts_after_a_good_first_sync(stub: Path) -> None:
    res, calls = entrypoint(stub, [0], *START)
    assert res.returncode == 0 and "SERVICES-STARTED" in res.stdout
    assert calls == 1 and (stub.parent / "args").read_text() == "once\n"


def test_entrypoint_stops_on_configuration_error(stub: Path) -> None:
    res, calls = entrypoint(stub, [2], *START)
    assert res.returncode == 2 and "SERVICES-STARTED" not in res.stdout
    assert calls == 1 and "configuration error" in res.stderr
    assert "numeric argument" not in res.stderr and "not starting" in res.stderr


@pytest.mark.parametrize("code,word", [(3, "rejected"), (4, "not initialized")])
def test_entrypoint_starts_not_ready_at_once(stub: Path, code: int, word: str) -> None:
    res, calls = entrypoint(stub, [code], *START)
    assert res.returncode == 0 and "SERVICES-STARTED" in res.stdout
    assert calls == 1 and word in res.stderr and "not-ready" in res.stderr


def test_entrypoint_retries_failures_within_the_budget(stub: Path) -> None:
    res, calls = entrypoint(stub, [1, 1, 0], *START)
    assert res.returncode == 0 and "SERVICES-STARTED" in res.stdout
    assert calls == 3


def test_entrypoint_starts_not_ready_when_the_budget_is_spent(stub: Path) -> None:
    res, calls = entrypoint(stub, [1], *START, SYNCAGENT_FIRST_SYNC_BUDGET="0")
    assert res.returncode == 0 and "SERVICES-STARTED" in res.stdout
    assert calls == 1 and "starting not-ready" in res.stderr


def test_entrypoint_execs_syncagent_exec_without_arguments(stub: Path) -> None:
    res, _ = entrypoint(stub, [0], SYNCAGENT_EXEC="/bin/echo FROM-SYNCAGENT-EXEC")
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "FROM-SYNCAGENT-EXEC"


def test_entrypoint_rejects_a_bad_budget(stub: Path) -> None:
    res, calls = entrypoint(stub, [0], *START, SYNCAGENT_FIRST_SYNC_BUDGET="2m")
    assert res.returncode == 2 and calls == 0 and "whole seconds" in res.stderr


def test_entrypoint_fails_when_the_agent_is_missing(stub: Path) -> None:
    res, _ = entrypoint(stub, [0], *START, SYNCAGENT_BIN="/nonexistent/syncagent")
    assert res.returncode == 1 and "SERVICES-STARTED" not in res.stdout


def test_entrypoint_stops_promptly_on_sigterm(stub: Path) -> None:
    (stub.parent / "codes").write_text("1\n")
    (stub.parent / "sleep").write_text("30\n")
    env = {**os.environ, "SYNCAGENT_BIN": str(stub), "SYNCAGENT_RUN_AS": ""}
    proc = subprocess.Popen(
        ["bash", str(ENTRYPOINT), *START],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not (stub.parent / "calls").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143 and "SERVICES-STARTED" not in out
    assert time.monotonic() - started < 5
    assert "terminated" in err
