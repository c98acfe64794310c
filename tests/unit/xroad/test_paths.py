"""Tests for syncagent.xroad.paths: node types, softToken keys, an initialised primary."""

from __future__ import annotations

import pytest
from support import REPO
from support.samples import AUTH_KEY, KEYCONF_XML, SIGN_KEY
from support.samples import keyconf_doc as kc
from support.samples import softtoken_device as soft

from syncagent.errors import Problem
from syncagent.xroad.paths import (
    PROFILES,
    REQUIRED_XROAD_PATHS,
    check_node_is_secondary,
    default_version_source,
    major_version,
    missing_required,
    node_local,
    same_release,
    softtoken_key_ids,
)

NODE_INI = "/etc/xroad/conf.d/node.ini"


# --------------------------------------------------------------------------- softToken keys


def test_softtoken_key_ids_skip_hsm() -> None:
    assert softtoken_key_ids(KEYCONF_XML) == [AUTH_KEY, SIGN_KEY]


def test_softtoken_key_ids_without_soft() -> None:
    assert (
        softtoken_key_ids(b"<keyConf><device><deviceType>x</deviceType></device></keyConf>") == []
    )


@pytest.mark.parametrize(
    ("devices", "ids"),
    [
        (soft("<key><keyId>A</keyId></key><key><keyId>B</keyId></key>"), ["A", "B"]),
        (soft("<key><keyId> A\n</keyId></key>"), [" A\n"]),  # kept as written
        (soft("<key><keyId>A</keyId><keyId>B</keyId></key>"), ["B"]),  # the last one
        (soft("<key><keyId>A<!-- c -->B</keyId></key>"), ["AB"]),
        (soft("<key><keyId>A<x>Q</x>B</keyId></key>"), ["B"]),  # text after the element
        (soft("<key><keyId>A&amp;B</keyId></key>"), ["A&B"]),
        (soft("<key><keyId/></key><key/>"), []),
        (soft("<key><keyId>A</keyId></key>", " softToken"), []),  # not exactly softToken
        (soft("<key><ns3:keyId>A</ns3:keyId></key>"), []),  # qualified: not the signer's element
        (
            "<ns3:device><deviceType>softToken</deviceType><key><keyId>A</keyId></key></ns3:device>",
            [],
        ),
        ("<x>" + soft("<key><keyId>A</keyId></key>") + "</x>", []),  # not a child of the root
    ],
)
def test_softtoken_keys_are_what_the_signers_jaxb_binding_finds(
    devices: str, ids: list[str]
) -> None:
    assert softtoken_key_ids(kc(devices)) == ids


# --------------------------------------------------------------------------- node type


@pytest.mark.parametrize(
    "data",
    [
        b"[node]\ntype=slave\n",
        b"[node]\ntype = secondary\n",
        b"[node]\ntype = slave # set by the secondary image\n",
        b"; node-local\n[node]\ntype = SLAVE ; comment\n",
        b'[node]\ntype = "slave"\n',
    ],
)
def test_node_is_secondary(data: bytes) -> None:
    assert check_node_is_secondary(NODE_INI, data) is None


@pytest.mark.parametrize("value", ["master", "primary", "Master"])
def test_node_is_primary(value: str) -> None:
    problem = check_node_is_secondary(NODE_INI, f"[node]\ntype = {value}\n".encode())
    assert problem == Problem(NODE_INI, f"this node is '{value}': refusing to overwrite a primary")


def test_node_ini_missing() -> None:
    assert check_node_is_secondary(NODE_INI, None) == Problem(
        NODE_INI,
        "conf.d/node.ini missing: cannot confirm this node is a secondary; set "
        'sync.node_type = "secondary" (or env XROAD_NODE_TYPE=secondary), or give this node '
        "its conf.d/node.ini ([node] type = slave)",
    )


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff\xfegarbage",
        b"hello world\n",
        b"",
        b"[other]\ntype=slave\n",
        b"[node]\nkind=slave\n",
        b"[node]\ntype = standalone\n",
    ],
)
def test_node_ini_garbage_refused(data: bytes) -> None:
    problem = check_node_is_secondary(NODE_INI, data)
    assert problem is not None and problem.path == NODE_INI and problem.message


# --------------------------------------------------------------------------- required paths


def test_missing_required() -> None:
    assert REQUIRED_XROAD_PATHS == ("conf.d", "signer/keyconf.xml")
    assert missing_required(["signer/keyconf.xml"], ["conf.d", "signer"]) == []
    assert missing_required([], []) == ["conf.d", "signer/keyconf.xml"]
    # conf.d must be a directory and keyconf a file, not the other way round
    assert missing_required(["conf.d"], ["signer/keyconf.xml"]) == [
        "conf.d",
        "signer/keyconf.xml",
    ]


# --------------------------------------------------------------------------- X-Road 8


@pytest.mark.parametrize("declared", ["secondary", "slave", "SECONDARY"])
def test_declared_secondary_needs_no_node_ini(declared: str) -> None:
    assert check_node_is_secondary(NODE_INI, None, declared) is None
    assert check_node_is_secondary(NODE_INI, b"[node]\ntype = slave\n", declared) is None
    assert check_node_is_secondary(NODE_INI, b"; no type here\n", declared) is None


@pytest.mark.parametrize("declared", ["primary", "master"])
def test_declared_primary_is_refused(declared: str) -> None:
    problem = check_node_is_secondary(NODE_INI, None, declared)
    assert problem == Problem(
        NODE_INI, f"this node is {declared!r} (XROAD_NODE_TYPE): refusing to overwrite a primary"
    )


def test_env_and_node_ini_that_disagree_are_refused_naming_both() -> None:
    problem = check_node_is_secondary(NODE_INI, b"[node]\ntype = master\n", "secondary")
    assert problem is not None
    assert "XROAD_NODE_TYPE='secondary'" in problem.message and "'master'" in problem.message
    problem = check_node_is_secondary(NODE_INI, b"[node]\ntype = slave\n", "primary")
    assert problem is not None and "ambiguous" in problem.message


def test_a_declared_type_does_not_excuse_a_broken_node_ini() -> None:
    problem = check_node_is_secondary(NODE_INI, b"\xff\xfegarbage", "secondary")
    assert problem is not None and "unreadable" in problem.message


@pytest.mark.parametrize(
    ("text", "major"),
    [
        (b"7.6.2\n", 7),
        (b"8.0.0-1.ubuntu24.04\n", 8),
        (b"  10.1\n", 10),
        (b"", None),
        (b"unknown\n", None),
        (None, None),
    ],
)
def test_major_version(text: bytes | None, major: int | None) -> None:
    assert major_version(text) == major


def test_an_x_road_8_primary_is_initialised_without_keyconf() -> None:
    assert missing_required([], ["conf.d"], 8) == []
    assert missing_required([], ["conf.d"], 7) == ["signer/keyconf.xml"]
    assert missing_required([], ["conf.d"], None) == ["signer/keyconf.xml"]
    assert missing_required([], [], 9) == ["conf.d"]


# --------------------------------------------------------------------------- releases


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("7.8.0-1.ubuntu24.04", "7.8.0", True),
        ("7.8.0", "7.8", True),
        ("1:7.8.0-2", "7.8.0", True),
        ("7.8.1", "7.8.0", False),
        ("8.0.0", "7.8.0", False),
        ("7.8.0", "not a version", None),
        ("", "7.8.0", None),
    ],
)
def test_releases_compare_as_x_road_numbers_them(a: str, b: str, same: bool | None) -> None:
    assert same_release(a, b) is same


def test_the_version_source_follows_the_profile() -> None:
    assert default_version_source("sidecar") == "/usr/share/xroad/config/VERSION"
    assert default_version_source("xlb") == "dpkg:xroad-proxy"
    assert default_version_source("none") is None


def test_the_docs_profiles_table_lists_each_profiles_patterns() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    for name, patterns in PROFILES.items():
        (row,) = [line for line in doc.splitlines() if line.startswith(f"| `{name}` |")]
        for pattern in patterns:
            assert f"`{pattern}`" in row, (name, pattern)


def test_x_road_8_keeps_its_per_node_files_node_local() -> None:
    seven, eight = node_local("sidecar", 7), node_local("sidecar", 8)
    assert "/conf.d/local-tls.yaml" not in seven and "/conf.d/local-tls.yaml" in eight
    assert "/services/local.properties" in eight
    assert set(seven) < set(eight) and node_local("none", 8) == ()
    assert node_local("xlb", None) == node_local("xlb", 7)
