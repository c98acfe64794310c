"""Tests for syncagent.local.validate: the gate between a staged candidate tree and /etc/xroad.

The content comes from support.samples (a real security server's shapes), because the
validator must never reject a tree X-Road itself accepts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.samples import (
    BILLION_LAUGHS,
    DB_PASSWORD,
    DB_PROPERTIES,
    GOOD_TREE,
    LOCAL_CONF,
    SIGN_KEY,
)

from syncagent.errors import Problem, Reason
from syncagent.local.validate import tree_warnings, validate_bash, validate_tree

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")


def lay_out(root: Path, files: dict[str, bytes]) -> list[str]:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return list(files)


def run_tree(root: Path, files: dict[str, bytes], *, xroad: bool = True) -> list[Problem]:
    return validate_tree(root, lay_out(root, files), xroad=xroad)


def replaced(rel: str, data: bytes) -> dict[str, bytes]:
    return {**GOOD_TREE, rel: data}


# --------------------------------------------------------------------------- whole tree


@needs_bash
def test_realistic_tree_passes(tmp_path: Path) -> None:
    assert run_tree(tmp_path, GOOD_TREE) == []


@pytest.mark.parametrize(
    ("rel", "data", "message"),
    [
        ("conf.d/local.ini", b"[proxy]\na=1\n[broken\nb=2\n", "line 3: malformed [section] header"),
        ("devices.ini", b"; ok\n[dev]\nlibrary=\xff\xfe.so\n", "line 3: not valid UTF-8"),
        (
            "globalconf/EE/shared-params.xml.metadata",
            b'{"a": 1,}',
            "Expecting property name enclosed in double quotes",
        ),
        ("conf.d/acme.yml", b"eab:\n\tkey: x\n", "found character '\\t' that cannot start"),
        ("db.properties", b"a=1\nb=\\u12\n", "line 2: malformed \\uxxxx escape"),
    ],
)
def test_bad_file_gives_exactly_one_problem(
    tmp_path: Path, rel: str, data: bytes, message: str
) -> None:
    problems = validate_tree(tmp_path, lay_out(tmp_path, replaced(rel, data)), xroad=True)
    assert len(problems) == 1
    assert problems[0].path == rel
    assert problems[0].message.startswith(message)
    assert problems[0].reason is Reason.VALIDATION


@pytest.mark.parametrize(
    ("rel", "data"),
    [
        # commons-configuration2 reads a key before any section into the global section
        ("conf.d/local.ini", b"; comment\n\nhealth-check-port=5588\n[proxy]\n"),
        # ... and a line without a separator as a key with an empty value
        ("conf.d/proxy.ini", b"[proxy]\nclient-timeout=1\nthis is not an ini line\n"),
        # the message log's mapping is read line by line, not as INI (user guide's format)
        ("messagelog/archive-encryption-mapping.ini", b"EE/GOV/1234 = 0A1B2C3D\nno mapping\n"),
        # a .json file no X-Road reader reads gets the name checks only
        ("metadata.json", b'{"a": 1,}'),
        # java.util.Properties loads empty keys and NUL bytes without complaint
        ("db.properties", b"a=1\n=no key\nb=\x00\n"),
    ],
)
def test_what_x_roads_reader_loads_is_accepted(tmp_path: Path, rel: str, data: bytes) -> None:
    assert validate_tree(tmp_path, lay_out(tmp_path, replaced(rel, data)), xroad=True) == []


def test_xml_not_well_formed_names_file_and_position(tmp_path: Path) -> None:
    bad = b"<configuration>\n  <root level='WARN'>\n</configuration>\n"
    problems = run_tree(tmp_path, replaced("conf.d/proxy-logback.xml", bad))
    assert problems == [Problem("conf.d/proxy-logback.xml", "mismatched tag: line 3, column 2")]


def test_entity_bomb_is_refused_without_expansion(tmp_path: Path) -> None:
    # Expanding lol9 would take ~3 GB; returning at all shows nothing was expanded:
    # the DOCTYPE with an internal subset is refused before any entity is declared.
    problems = run_tree(tmp_path, replaced("configuration-anchor.xml", BILLION_LAUGHS))
    assert len(problems) == 1
    assert problems[0].path == "configuration-anchor.xml"
    assert problems[0].message.startswith("DTD internal subset refused: line 2")


def test_keyconf_naming_a_deleted_key_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    """X-Road's key deletion removes the .p12 at once and rewrites keyconf.xml up to a minute
    later; the primary's signer runs that tree, so a secondary takes it (and says so)."""
    files = dict(GOOD_TREE)
    del files[f"signer/softtoken/{SIGN_KEY}.p12"]
    paths = lay_out(tmp_path, files)
    assert validate_tree(tmp_path, paths, xroad=True) == []
    assert tree_warnings(tmp_path, paths) == [
        Problem(
            "signer/keyconf.xml",
            f"softToken key {SIGN_KEY} has no signer/softtoken/{SIGN_KEY}.p12",
        )
    ]
    assert tree_warnings(tmp_path, lay_out(tmp_path / "full", dict(GOOD_TREE))) == []


def test_keyconf_check_only_for_xroad_trees(tmp_path: Path) -> None:
    files = dict(GOOD_TREE)
    del files[f"signer/softtoken/{SIGN_KEY}.p12"]
    assert validate_tree(tmp_path, lay_out(tmp_path, files), xroad=False, run_bash=False) == []


def test_invalid_keyconf_reported_once(tmp_path: Path) -> None:
    problems = run_tree(tmp_path, replaced("signer/keyconf.xml", b"<ns3:keyConf>"))
    assert [p.path for p in problems] == ["signer/keyconf.xml"]


# --------------------------------------------------------------------------- bash


@needs_bash
def test_bash_syntax_error_in_services_local_conf(tmp_path: Path) -> None:
    bad = b'SECRET_TOKEN="hunter2"\nif [ -n "$SECRET_TOKEN" ]; then\n  X=1\nfi fi\n'
    problems = run_tree(tmp_path, replaced("services/local.conf", bad))
    assert problems == [
        Problem(
            "services/local.conf",
            "services/local.conf: line 4: syntax error near unexpected token `fi'",
        )
    ]
    assert str(tmp_path) not in problems[0].message


@needs_bash
def test_bash_checks_only_direct_children_of_services(tmp_path: Path) -> None:
    files = {**GOOD_TREE, "services/sub/x.conf": b"fi fi\n", "conf.d/x.conf": b"fi fi\n"}
    assert run_tree(tmp_path, files) == []


def test_run_bash_false_skips_bash(tmp_path: Path) -> None:
    paths = lay_out(tmp_path, replaced("services/local.conf", b"fi fi\n"))
    assert validate_tree(tmp_path, paths, xroad=True, run_bash=False) == []


@needs_bash
def test_validate_bash_direct(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_bytes(LOCAL_CONF)
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b'X="unterminated\n')
    assert validate_bash(good) is None
    problem = validate_bash(bad)
    assert problem is not None and problem.path == str(bad)
    assert "line 1" in problem.message
    assert len(problem.message) <= 510


# --------------------------------------------------------------------------- secrets


def test_db_properties_messages_never_contain_the_password(tmp_path: Path) -> None:
    broken = [
        DB_PROPERTIES + b"x=\\u00" + DB_PASSWORD.encode() + b"\n",
        DB_PROPERTIES.replace(DB_PASSWORD.encode(), DB_PASSWORD.encode() + b"\\uZZZZ"),
        b"\\u" + DB_PASSWORD.encode() + b"\n",
    ]
    for data in broken:
        problems = run_tree(tmp_path, replaced("db.properties", data))
        assert [p.path for p in problems] == ["db.properties"]
        assert DB_PASSWORD not in str(problems[0])
