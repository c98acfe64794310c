"""What X-Road's real readers do with the shapes operators write, pinned so the facts are on record.

syncagent's validation gate must accept exactly what X-Road accepts. These tests run X-Road's own
libraries, configured as X-Road configures them (tests/oracle/README.md), over documented and
edge-case inputs; when a library upgrade changes an answer, a test here fails and says which.
Each group reads all its inputs in one JVM (module-scoped fixtures), since JVM start dominates.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import defusedxml.ElementTree as ET
import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from support.readers import (
    Harness,
    KeyconfWatcher,
    Reading,
    WatchEvent,
    YamlFlavour,
    read_devices,
    read_ini,
    read_keyconf,
    read_properties,
    read_yaml,
)
from support.samples import KEYCONF_NS
from support.samples import keyconf_doc as _kc
from support.samples import softtoken_device as _soft
from support.xroad_etc import (
    ADMIN_GUIDE_FILES,
    SOFTTOKEN_PIN,
    EtcTree,
    build_xroad7_etc,
    build_xroad8_etc,
)

Reader = Callable[[list[Path]], list[Reading]]


def _read_all(
    factory: pytest.TempPathFactory, name: str, cases: dict[str, bytes], reader: Reader
) -> dict[str, Reading]:
    """Write every case to its own file and read them in one batch."""
    d = factory.mktemp(name)
    paths = []
    for case, body in cases.items():
        p = d / case
        p.write_bytes(body)
        paths.append(p)
    return dict(zip(cases, reader(paths), strict=True))


# ---------------------------------------------------------------------------------------------
# INI: commons-configuration2 INIConfiguration as SystemPropertiesLoader sets it up
# ---------------------------------------------------------------------------------------------

INI_CASES: dict[str, bytes] = {
    "global_key": b"early=1\n[proxy]\nlate=2\n",
    "no_equals": b"[proxy]\nflag\n",
    "inline_comments": b"[s]\na = b # hash comment\nc = d ; semicolon comment\n"
    b"e = f#glued\ng = h;glued\n",
    "quoted": b'[s]\nq = "x # y" # trailing\nsq = \'single\'\ntwo = "a" "b"\n'
    b'open = "unterminated\nesc = "in\\"side"\n',
    "continuation": b"[s]\nspaced = one \\\n  two\nglued = one\\\n  two\n",
    "duplicates": b"[s]\nk = first\nk = second\n",
    "unclosed_section": b"[proxy\nk = v\n",
    "whitespace": b"[s]\n   spaced key   =   padded value   \n\ttabbed\t=\tx\n",
    "section_comment": b"[a]\nx = 1\n[b] ; why\ny = 2\n",
    "dotted_key": b"[s]\na.b = dotted\n",
    "repeated_section": b"[s]\nk = 1\n[t]\nm = 2\n[s]\nk = 3\nn = 4\n",
    "bom": b"\xef\xbb\xbf[s]\nk = v\n",
    "crlf": b"[s]\r\nk = v\r\n",
    "empty": b"",
    "comments_only": b"; only\n# comments\n",
    "bad_utf8": b"[s]\nk = \xff\xfe\n",
    "latin1": b"[s]\nk = caf\xe9\n",
    "self_reference": b"[s]\na = ${a}\n",
    "interpolation": b"[s]\nbase = /var/lib\npath = ${base}/xroad\n"
    b"env = ${env:SYNCAGENT_SURELY_UNSET}\nescaped = $${base}\nescaped_unknown = $${nope}\n",
    "empty_section_name": b"[]\nk = v\n",
    "colon": b"[s]\nk : v\n",
    "commas": b"[s]\nlist = a, b,c\n",
    "empty_value": b"[s]\nk =\n",
    "empty_section": b"[empty]\n[s]\nk = v\n",
}


@pytest.fixture(scope="module")
def ini(tmp_path_factory: pytest.TempPathFactory, oracle: Harness) -> dict[str, Reading]:
    return _read_all(tmp_path_factory, "ini", INI_CASES, read_ini)


def test_ini_key_before_any_section_is_global_and_becomes_xroad_null(
    ini: dict[str, Reading],
) -> None:
    r = ini["global_key"]
    assert r.ok
    assert r.value(None, "early") == "1"
    assert ("xroad.null.early", "1") in r.properties
    assert ("xroad.proxy.late", "2") in r.properties


def test_ini_line_without_equals_is_a_key_with_empty_value(ini: dict[str, Reading]) -> None:
    assert ini["no_equals"].value("proxy", "flag") == ""


def test_ini_inline_comment_needs_whitespace_before_it(ini: dict[str, Reading]) -> None:
    r = ini["inline_comments"]
    assert r.value("s", "a") == "b"
    assert r.value("s", "c") == "d"
    assert r.value("s", "e") == "f#glued"
    assert r.value("s", "g") == "h;glued"


def test_ini_quotes_protect_comment_chars_and_are_stripped(ini: dict[str, Reading]) -> None:
    r = ini["quoted"]
    assert r.value("s", "q") == "x # y"
    assert r.value("s", "sq") == "single"
    assert r.value("s", "two") == "a"  # only the first quoted part
    assert r.value("s", "open") == "unterminated"
    assert r.value("s", "esc") == 'in"side'


def test_ini_backslash_continues_only_after_whitespace(ini: dict[str, Reading]) -> None:
    r = ini["continuation"]
    assert r.value("s", "spaced") == "one\ntwo"
    # no space before '\': the backslash is kept and the next line is a key of its own
    assert r.value("s", "glued") == "one\\"
    assert r.value("s", "two") == ""


def test_ini_duplicate_key_first_value_wins(ini: dict[str, Reading]) -> None:
    r = ini["duplicates"]
    assert r.value("s", "k") == "first"
    assert r.keys("s") == ["k"]


def test_ini_section_without_bracket_is_a_global_key(ini: dict[str, Reading]) -> None:
    r = ini["unclosed_section"]
    assert r.ok
    assert r.value(None, "[proxy") == ""
    assert r.value(None, "k") == "v"
    assert "proxy" not in {e.section for e in r.entries}


def test_ini_whitespace_around_keys_and_values_is_trimmed(ini: dict[str, Reading]) -> None:
    r = ini["whitespace"]
    assert r.value("s", "spaced key") == "padded value"
    assert r.value("s", "tabbed") == "x"


def test_ini_section_line_with_comment_is_not_a_section_in_2_8(ini: dict[str, Reading]) -> None:
    """commons-configuration2 2.8.0 (Debian bookworm) takes "[b] ; why" for a key of section a;
    see tests/oracle/README.md for what X-Road's 2.13.0 does."""
    r = ini["section_comment"]
    assert r.value("a", "[b] ; why") == ""
    assert r.value("a", "y") == "2"
    assert "b" not in {e.section for e in r.entries}


def test_ini_dot_in_key_is_doubled_in_the_property_name(ini: dict[str, Reading]) -> None:
    r = ini["dotted_key"]
    assert r.keys("s") == ["a..b"]
    assert r.properties == [("xroad.s.a..b", "dotted")]


def test_ini_repeated_section_merges_and_first_value_wins(ini: dict[str, Reading]) -> None:
    r = ini["repeated_section"]
    assert r.value("s", "k") == "1"
    assert r.value("s", "n") == "4"
    assert [e.section for e in r.entries] == ["s", "s", "t"]


def test_ini_utf8_bom_turns_the_first_section_header_into_a_key(ini: dict[str, Reading]) -> None:
    r = ini["bom"]
    assert r.ok
    assert r.value(None, "\ufeff[s]") == ""
    assert r.value(None, "k") == "v"


def test_ini_crlf_empty_and_comment_only_files_read(ini: dict[str, Reading]) -> None:
    assert ini["crlf"].value("s", "k") == "v"
    assert ini["empty"].ok and ini["empty"].entries == []
    assert ini["comments_only"].ok and ini["comments_only"].entries == []


def test_ini_invalid_utf8_makes_x_road_skip_the_whole_file(ini: dict[str, Reading]) -> None:
    for case in ("bad_utf8", "latin1"):
        r = ini[case]
        assert not r.ok
        assert r.exception == "java.nio.charset.MalformedInputException"
        assert r.consequence == "file-skipped"


def test_ini_self_reference_throws_past_the_loader(ini: dict[str, Reading]) -> None:
    r = ini["self_reference"]
    assert not r.ok
    assert r.exception == "java.lang.IllegalStateException"
    assert r.consequence == "service-fails"


def test_ini_values_are_interpolated(ini: dict[str, Reading]) -> None:
    r = ini["interpolation"]
    assert r.value("s", "path") == "/var/lib/xroad"
    assert r.value("s", "env") == "${env:SYNCAGENT_SURELY_UNSET}"
    # "$$" escapes once, but the result is interpolated again: only unknown names stay literal
    assert r.value("s", "escaped") == "/var/lib"
    assert r.value("s", "escaped_unknown") == "${nope}"


def test_ini_empty_section_name_gives_a_null_value_and_kills_the_loader(
    ini: dict[str, Reading],
) -> None:
    """2.8.0 only: from 2.11.0 (CONFIGURATION-844) "[]" is a section named " " (README)."""
    r = ini["empty_section_name"]
    assert not r.ok
    assert r.exception == "java.lang.NullPointerException"  # System.setProperty(name, null)
    assert r.consequence == "service-fails"


def test_ini_colon_separator_and_commas_kept_whole(ini: dict[str, Reading]) -> None:
    assert ini["colon"].value("s", "k") == "v"
    assert ini["commas"].value("s", "list") == "a, b,c"
    assert ini["empty_value"].value("s", "k") == ""


def test_ini_sections_as_the_loader_iterates_them(ini: dict[str, Reading]) -> None:
    assert ini["global_key"].sections == [None, "proxy"]
    assert ini["empty_section"].sections == ["empty", "s"]  # listed, contributes no property
    assert ini["empty_section"].properties == [("xroad.s.k", "v")]


def test_ini_file_lookup_reads_another_file_into_the_value(oracle: Harness, tmp_path: Path) -> None:
    """The default interpolation lookups include file: (also env, sys, properties, xml...)."""
    secret = tmp_path / "content.txt"
    secret.write_text("from another file\n")
    ini_file = tmp_path / "lookup.ini"
    ini_file.write_text(f"[s]\nk = ${{file:UTF-8:{secret}}}\nd = ${{dns:localhost}}\n")
    (r,) = read_ini([ini_file])
    assert r.value("s", "k") == "from another file\n"
    assert r.value("s", "d") == "${dns:localhost}"  # dns, url, script are off by default


def test_ini_missing_file_is_skipped(oracle: Harness, tmp_path: Path) -> None:
    (r,) = read_ini([tmp_path / "absent.ini"])
    assert not r.ok
    assert r.exception == "java.nio.file.NoSuchFileException"
    assert r.consequence == "file-skipped"


DEVICES_CASES: dict[str, bytes] = {
    "global_key": b"library = /x.so\n[hsm]\nlibrary = /usr/lib/pkcs11.so\n",
    "lists": b"[hsm]\nlibrary = /usr/lib/p.so\nslot_ids = 1, 2,3\n",
    "bad_boolean": b"[hsm]\nlibrary = /usr/lib/p.so\nenabled = maybe\n",
    "soft_off": b"[softToken]\nenabled = false\n",
    "bad_utf8": b"[hsm]\nlibrary = /usr/lib/\xff.so\n",
}


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory, oracle: Harness) -> dict[str, Reading]:
    return _read_all(tmp_path_factory, "devices", DEVICES_CASES, read_devices)


def test_devices_global_key_is_logged_and_skipped(devices: dict[str, Reading]) -> None:
    r = devices["global_key"]
    assert r.ok
    assert r.logged == ["No UID specified for module, skipping..."]
    assert r.value("hsm", "library") == "/usr/lib/pkcs11.so"


def test_devices_commas_split_into_lists_and_get_string_is_the_first(
    devices: dict[str, Reading],
) -> None:
    r = devices["lists"]
    assert r.value("hsm", "slot_ids") == "1"
    # items are not trimmed (ModuleConf trims slot_ids itself)
    assert [e.values for e in r.lists if e.key == "slot_ids"] == [["1", " 2", "3"]]


def test_devices_bad_boolean_is_logged_and_the_module_skipped(
    devices: dict[str, Reading],
) -> None:
    assert devices["bad_boolean"].logged == [
        "Invalid value of 'enabled' for module (hsm), skipping..."
    ]
    assert devices["soft_off"].ok and devices["soft_off"].logged == []


def test_devices_unreadable_file_leaves_only_the_soft_token(devices: dict[str, Reading]) -> None:
    r = devices["bad_utf8"]
    assert not r.ok
    assert r.consequence == "modules-cleared"


# ---------------------------------------------------------------------------------------------
# java.util.Properties
# ---------------------------------------------------------------------------------------------

PROPERTIES_CASES: dict[str, bytes] = {
    "continuation": b"url = jdbc:postgresql://db:5432/\\\n    serverconf\n",
    "separators": b"colon:v1\nspace v2\nequals = v3\n",
    "unicode_escape": b"k\\u00e4y = caf\\u00e9\n",
    "bad_escape": b"k = \\u00\n",
    "bad_escape_hex": b"k = \\uZZZZ\n",
    "latin1_byte": b"k = caf\xe9\n",
    "utf8_bytes": "k = café\n".encode(),
    "duplicates": b"k = 1\nk = 2\n",
    "comments": b"# hash\n! bang\n   # indented\nk = v # not a comment\n",
    "trailing_space": b"k = v   \n",
    "dangling_backslash": b"k = v\\",
    "empty": b"",
}


@pytest.fixture(scope="module")
def props(tmp_path_factory: pytest.TempPathFactory, oracle: Harness) -> dict[str, Reading]:
    return _read_all(tmp_path_factory, "props", PROPERTIES_CASES, read_properties)


@pytest.fixture(scope="module")
def props_utf8(tmp_path_factory: pytest.TempPathFactory, oracle: Harness) -> dict[str, Reading]:
    return _read_all(
        tmp_path_factory, "props8", PROPERTIES_CASES, lambda p: read_properties(p, utf8=True)
    )


def test_properties_backslash_continues_and_drops_leading_blanks(
    props: dict[str, Reading],
) -> None:
    assert props["continuation"].value("", "url") == "jdbc:postgresql://db:5432/serverconf"


def test_properties_colon_space_and_equals_separate(props: dict[str, Reading]) -> None:
    r = props["separators"]
    assert [(e.key, e.value) for e in r.entries] == [
        ("colon", "v1"),
        ("space", "v2"),
        ("equals", "v3"),
    ]


def test_properties_unicode_escapes_in_keys_and_values(props: dict[str, Reading]) -> None:
    assert props["unicode_escape"].value("", "käy") == "café"


def test_properties_invalid_unicode_escape_throws(props: dict[str, Reading]) -> None:
    for case in ("bad_escape", "bad_escape_hex"):
        r = props[case]
        assert not r.ok
        assert r.exception == "java.lang.IllegalArgumentException"
        assert r.error == "Malformed \\uxxxx encoding."


def test_properties_stream_is_latin1_reader_is_utf8(
    props: dict[str, Reading], props_utf8: dict[str, Reading]
) -> None:
    assert props["latin1_byte"].value("", "k") == "café"
    assert props["utf8_bytes"].value("", "k") == "cafÃ©"  # X-Road 7: UTF-8 bytes are mojibake
    assert props_utf8["utf8_bytes"].value("", "k") == "café"
    assert props_utf8["latin1_byte"].value("", "k") == "caf\ufffd"  # replaced, not an error


def test_properties_last_duplicate_wins_and_hash_mid_line_is_data(
    props: dict[str, Reading],
) -> None:
    assert props["duplicates"].value("", "k") == "2"
    assert props["comments"].entries == [("", "k", "v # not a comment")]


def test_properties_trailing_space_kept_dangling_backslash_dropped(
    props: dict[str, Reading],
) -> None:
    assert props["trailing_space"].value("", "k") == "v   "
    assert props["dangling_backslash"].value("", "k") == "v"
    assert props["empty"].ok and props["empty"].entries == []


# ---------------------------------------------------------------------------------------------
# YAML: SnakeYAML as X-Road 7 (acme.yml, mail.yml) and X-Road 8 (local.yaml) read it
# ---------------------------------------------------------------------------------------------

ALIASES_51 = ("base: &a [1]\nl: [" + ", ".join(["*a"] * 51) + "]\n").encode()
ALIASES_50 = ("base: &a [1]\nl: [" + ", ".join(["*a"] * 50) + "]\n").encode()

YAML_CASES: dict[str, bytes] = {
    "duplicate": b"a: 1\na: 2\n",
    "tab_indent": b"a:\n\tb: 1\n",
    "bad_indent": b"a:\n  b: 1\n c: 2\n",
    "anchors": b"base: &b {x: 1}\nother: *b\n",
    "aliases_51": ALIASES_51,
    "aliases_50": ALIASES_50,
    "two_documents": b"a: 1\n---\nb: 2\n",
    "global_tag": b"x: !!java.io.File /tmp\n",
    "scalars": b"n: 10\nf: 1.5\nt: 2024-01-02\nb: yes\ns: '10'\nz: ~\n",
    "dotted_and_list": b"\"a.b\": 1\nl: [x, 'y,z']\nm: [{p: 1}]\n",
    "empty": b"",
}
FLAVOURS: tuple[YamlFlavour, ...] = ("yaml", "yaml-smallrye", "yaml-spring")


@pytest.fixture(scope="module")
def yaml_by(
    tmp_path_factory: pytest.TempPathFactory, oracle: Harness
) -> dict[str, dict[str, Reading]]:
    return {f: _read_all(tmp_path_factory, f, YAML_CASES, _yaml_reader(f)) for f in FLAVOURS}


def _yaml_reader(flavour: YamlFlavour) -> Reader:
    return lambda paths: read_yaml(paths, flavour)


def test_yaml_duplicate_keys_last_wins_except_spring(
    yaml_by: dict[str, dict[str, Reading]],
) -> None:
    assert yaml_by["yaml"]["duplicate"].data == {"a": 2}
    assert yaml_by["yaml-smallrye"]["duplicate"].properties == [("a", "2")]
    spring = yaml_by["yaml-spring"]["duplicate"]
    assert not spring.ok
    assert spring.exception == "org.yaml.snakeyaml.constructor.DuplicateKeyException"


def test_yaml_tab_and_bad_indentation_fail_everywhere(
    yaml_by: dict[str, dict[str, Reading]],
) -> None:
    for flavour in FLAVOURS:
        assert yaml_by[flavour]["tab_indent"].exception == (
            "org.yaml.snakeyaml.scanner.ScannerException"
        )
        assert yaml_by[flavour]["bad_indent"].exception == (
            "org.yaml.snakeyaml.parser.ParserException"
        )


def test_yaml_anchors_resolve_and_50_collection_aliases_is_the_cap(
    yaml_by: dict[str, dict[str, Reading]],
) -> None:
    assert yaml_by["yaml"]["anchors"].data == {"base": {"x": 1}, "other": {"x": 1}}
    for flavour in FLAVOURS:
        assert yaml_by[flavour]["aliases_50"].ok
    assert "exceeds the specified max=50" in str(yaml_by["yaml"]["aliases_51"].error)
    assert not yaml_by["yaml-smallrye"]["aliases_51"].ok
    assert yaml_by["yaml-spring"]["aliases_51"].ok  # Spring Boot lifts the limit


def test_yaml_several_documents_only_where_load_all_is_used(
    yaml_by: dict[str, dict[str, Reading]],
) -> None:
    single = yaml_by["yaml"]["two_documents"]
    assert not single.ok and "expected a single document" in str(single.error)
    assert yaml_by["yaml-smallrye"]["two_documents"].properties == [("a", "1"), ("b", "2")]
    assert yaml_by["yaml-spring"]["two_documents"].data == [{"a": 1}, {"b": 2}]


def test_yaml_global_tags_are_refused(yaml_by: dict[str, dict[str, Reading]]) -> None:
    for flavour in FLAVOURS:
        r = yaml_by[flavour]["global_tag"]
        assert not r.ok
        assert r.exception == "org.yaml.snakeyaml.constructor.ConstructorException"


def test_yaml_scalar_types_per_reader(yaml_by: dict[str, dict[str, Reading]]) -> None:
    plain = yaml_by["yaml"]["scalars"].data
    assert plain == {
        "n": 10,
        "f": 1.5,
        "t": "2024-01-02T00:00:00Z",
        "b": True,
        "s": "10",
        "z": None,
    }
    smallrye = dict(yaml_by["yaml-smallrye"]["scalars"].properties)
    assert smallrye == {"n": "10", "f": "1.5", "t": "2024-01-02", "b": "true", "s": "10"}
    spring = yaml_by["yaml-spring"]["scalars"].data
    assert spring == [{"n": 10, "f": 1.5, "t": "2024-01-02", "b": True, "s": "10", "z": None}]


def test_yaml_smallrye_flattening(yaml_by: dict[str, dict[str, Reading]]) -> None:
    props = dict(yaml_by["yaml-smallrye"]["dotted_and_list"].properties)
    assert props == {
        '"a.b"': "1",
        "l": "x,y\\,z",
        "l[0]": "x",
        "l[1]": "y,z",
        "m[0].p": "1",
    }


def test_yaml_empty_file(yaml_by: dict[str, dict[str, Reading]]) -> None:
    assert yaml_by["yaml"]["empty"].ok and yaml_by["yaml"]["empty"].data is None
    assert yaml_by["yaml-smallrye"]["empty"].data == []
    assert yaml_by["yaml-spring"]["empty"].data == []


BEAN_CASES: dict[str, bytes] = {
    "mail_ok": b"host: h\nport: 587\nusername: u\npassword: p\nuse-ssl-tls: yes\n",
    "mail_unknown_key": b"hots: h\n",
    "mail_bad_port": b"host: h\nport: smtp\n",
    "mail_duplicate": b"host: h\nport: 25\nport: 26\n",
    "mail_camel_case": b"useSslTls: true\n",
}


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory, oracle: Harness) -> dict[str, Reading]:
    return _read_all(tmp_path_factory, "mail", BEAN_CASES, lambda p: read_yaml(p, "mail"))


def test_mail_bean_binding(mail: dict[str, Reading]) -> None:
    assert mail["mail_ok"].ok
    assert isinstance(mail["mail_ok"].data, dict) and mail["mail_ok"].data["use-ssl-tls"] is True
    for case in ("mail_unknown_key", "mail_bad_port"):
        assert not mail[case].ok
        assert mail[case].consequence == "defaults"  # X-Road warns, mail notifications off
    assert "Unable to find property 'hots'" in str(mail["mail_unknown_key"].error)
    assert isinstance(mail["mail_duplicate"].data, dict)
    assert mail["mail_duplicate"].data["port"] == 26
    assert mail["mail_camel_case"].ok  # the bean's own property name binds too


# ---------------------------------------------------------------------------------------------
# Realistic trees: every file a real server has loads in the reader X-Road uses for it
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xroad7(tmp_path_factory: pytest.TempPathFactory) -> EtcTree:
    return build_xroad7_etc(tmp_path_factory.mktemp("x7") / "etc" / "xroad")


@pytest.fixture(scope="module")
def xroad8(tmp_path_factory: pytest.TempPathFactory) -> EtcTree:
    return build_xroad8_etc(tmp_path_factory.mktemp("x8") / "etc" / "xroad")


def _assert_all_ok(readings: list[Reading]) -> None:
    assert readings, "no files of this kind"
    bad = [(r.path, r.exception, r.error) for r in readings if not r.ok]
    assert bad == []


def test_xroad7_tree_loads_in_every_reader(oracle: Harness, xroad7: EtcTree) -> None:
    ini_readings = read_ini(xroad7.by_reader("ini"))
    _assert_all_ok(ini_readings)
    devices_readings = read_devices(xroad7.by_reader("devices"))
    _assert_all_ok(devices_readings)
    assert all(r.logged == [] for r in devices_readings)
    _assert_all_ok(read_properties(xroad7.by_reader("properties")))
    _assert_all_ok(read_yaml(xroad7.by_reader("acme"), "acme"))
    _assert_all_ok(read_yaml(xroad7.by_reader("mail"), "mail"))
    _assert_all_ok(read_yaml(xroad7.by_reader("yaml"), "yaml"))
    by_name = {r.path.name: r for r in ini_readings}
    local = dict(by_name["local.ini"].properties)
    assert local["xroad.proxy.backup-encryption-keyids"] == "8E0A9C3B2D4F6A71, 5C1E7B9D3A2F4E60"
    assert local["xroad.message-log.archive-grouping"] == "member"
    assert dict(by_name["node.ini"].properties) == {"xroad.node.type": "master"}


def test_xroad7_tree_xml_json_and_keystores_are_well_formed(xroad7: EtcTree) -> None:
    for path in xroad7.by_reader("xml") + xroad7.by_reader("keyconf"):
        if path.parent.name == "jetty":
            continue  # DOCTYPE: defusedxml refuses it, jetty's own parser reads it
        ET.parse(path)
    for path in xroad7.by_reader("pkcs12"):
        if path.parent.name == "softtoken":
            key, cert, _ = pkcs12.load_key_and_certificates(path.read_bytes(), SOFTTOKEN_PIN)
            assert key is not None and cert is not None
    keyconf = ET.parse(xroad7.root / "signer/keyconf.xml").getroot()
    assert keyconf.tag == "{http://x-road.eu/xsd/xroad.xsd}keyConf"
    key_ids = [e.text or "" for e in keyconf.findall("./device/key/keyId")]  # unqualified
    assert sorted(key_ids) == sorted(k.key_id for k in xroad7.keys)
    assert all(len(k) == 40 and int(k, 16) >= 0 for k in key_ids)
    for k in xroad7.keys:
        assert (xroad7.root / f"signer/softtoken/{k.key_id}.p12").exists()
        assert (
            base64.b64encode(k.public_key_der).decode()
            in (xroad7.root / "signer/keyconf.xml").read_text()
        )


def test_xroad7_tree_modes_as_installed(xroad7: EtcTree) -> None:
    mode = {rel: os.stat(xroad7.root / rel).st_mode & 0o7777 for rel in xroad7.modes}
    assert os.stat(xroad7.root).st_mode & 0o777 == 0o751
    assert mode["signer/keyconf.xml"] == 0o660
    assert mode["gpghome"] == 0o700
    assert mode["conf.d/local.ini"] == 0o640
    assert mode["backup.d/30_xroad-proxy"] == 0o440
    assert mode == xroad7.modes
    assert xroad7.outside["xroad.properties"].stat().st_mode & 0o777 == 0o600


def test_admin_guide_files_are_in_the_tree(xroad7: EtcTree) -> None:
    for rel, _guide, _section in ADMIN_GUIDE_FILES:
        path = (xroad7.root / rel).resolve()
        assert path.exists(), rel


def test_xroad8_tree_loads_in_every_reader(oracle: Harness, xroad8: EtcTree) -> None:
    yamls = xroad8.by_reader("yaml-smallrye")
    _assert_all_ok(read_yaml(yamls, "yaml-smallrye"))
    _assert_all_ok(read_yaml(yamls, "yaml-spring"))
    db = xroad8.by_reader("properties")
    _assert_all_ok(read_properties(db))
    (utf8,) = read_properties(db, utf8=True)
    assert utf8.value("", "xroad.db.serverconf.hibernate.connection.username") == "serverconf"
    (local,) = read_yaml([xroad8.root / "conf.d/local.yaml"], "yaml-smallrye")
    props = dict(local.properties)
    assert props["xroad.proxy.client-timeout"] == "30000"
    assert props["xroad.acme"].startswith("eab-credentials:\n")


# ---------------------------------------------------------------------------------------------
# keyconf.xml: the signer's JAXB unmarshaller (TokenConf, no schema validator)
# ---------------------------------------------------------------------------------------------

KEYCONF_CASES: dict[str, bytes] = {
    "plain": _kc(_soft('<key usage="SIGNING"><keyId>AB</keyId></key><key><keyId>CD</keyId></key>')),
    "no_namespace_root": _kc(_soft("<key><keyId>AB</keyId></key>"), "keyConf"),
    "other_namespace_root": _kc("", 'ns3:keyConf xmlns:ns3="urn:other"'),
    "lowercase_root": _kc("", f'ns3:keyconf xmlns:ns3="{KEYCONF_NS}"'),
    "default_namespace": _kc(
        _soft("<key><keyId>AB</keyId></key>"), f'keyConf xmlns="{KEYCONF_NS}"'
    ),
    "qualified_device": f'<n:keyConf xmlns:n="{KEYCONF_NS}"><n:device><deviceType>softToken'
    "</deviceType><key><keyId>AB</keyId></key></n:device></n:keyConf>".encode(),
    "unknown_elements": _kc("<extra/>" + _soft("<bogus/><key><zzz/><keyId>AB</keyId></key>")),
    "typed_garbage": _kc(
        _soft(
            '<pinIndex>x</pinIndex><key usage="NEITHER"><keyId>AB</keyId>'
            "<publicKey>!!!</publicKey></key>"
        )
    ),
    "whitespace_kept": _kc(_soft("<key><keyId> AB\n</keyId></key>")),
    "device_type_exact": _kc(_soft("<key><keyId>AB</keyId></key>", " softToken")),
    "last_key_id_wins": _kc(_soft("<key><keyId>AB</keyId><keyId>CD</keyId></key>")),
    "last_device_type_wins": _kc(
        "<device><deviceType>softToken</deviceType><deviceType>hsm</deviceType>"
        "<key><keyId>AB</keyId></key></device>"
    ),
    "comment_inside": _kc(_soft("<key><keyId>A<!-- c -->B</keyId></key>")),
    "element_inside": _kc(_soft("<key><keyId>A<x>Q</x>B</keyId></key>")),
    "no_key_id": _kc(_soft("<key><keyId/></key><key/>")),
    "nested_device": _kc("<x>" + _soft("<key><keyId>AB</keyId></key>") + "</x>"),
    "internal_entity": b'<!DOCTYPE k [<!ENTITY id "AB">]>'
    + _kc(_soft("<key><keyId>&id;</keyId></key>")),
    "malformed": _kc(_soft("<key><keyId>AB</keyId>")),
}


@pytest.fixture(scope="module")
def keyconfs(tmp_path_factory: pytest.TempPathFactory, oracle: Harness) -> dict[str, Reading]:
    return _read_all(tmp_path_factory, "keyconf", KEYCONF_CASES, read_keyconf)


def test_keyconf_root_must_be_keyconf_in_the_xroad_namespace(keyconfs: dict[str, Reading]) -> None:
    assert keyconfs["plain"].ok and keyconfs["plain"].data == ["AB", "CD"]
    for case in ("no_namespace_root", "other_namespace_root", "lowercase_root"):
        r = keyconfs[case]
        assert not r.ok and r.consequence == "signer-fails", case
        assert "unexpected element" in (r.error or ""), (case, r.error)
    assert keyconfs["malformed"].consequence == "signer-fails"


def test_keyconf_children_are_unqualified_and_direct(keyconfs: dict[str, Reading]) -> None:
    """A default namespace on the root qualifies <device> too: the signer then sees no key."""
    for case in ("default_namespace", "qualified_device", "nested_device"):
        assert keyconfs[case].ok and keyconfs[case].data == [], case


def test_keyconf_unknown_elements_and_bad_typed_values_load(
    keyconfs: dict[str, Reading],
) -> None:
    """No schema: unknown elements are skipped; in our classes the typed fields are not
    mirrored, so this pins only that they do not disturb the keys."""
    assert keyconfs["unknown_elements"].data == ["AB"]
    assert keyconfs["typed_garbage"].data == ["AB"]


def test_keyconf_strings_as_jaxb_binds_them(keyconfs: dict[str, Reading]) -> None:
    assert keyconfs["whitespace_kept"].data == [" AB\n"]
    assert keyconfs["device_type_exact"].data == []
    assert keyconfs["last_key_id_wins"].data == ["CD"]
    assert keyconfs["last_device_type_wins"].data == []
    assert keyconfs["comment_inside"].data == ["AB"]
    assert keyconfs["element_inside"].data == ["B"]
    assert keyconfs["no_key_id"].data == ["", None]
    assert keyconfs["internal_entity"].data == ["AB"]  # JAXB expands it; the agent refuses


# ---------------------------------------------------------------------------------------------
# keyconf.xml watch: FileWatcherRunner's WatchService on the signer directory
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def signer_dir(tmp_path: Path) -> Path:
    d = tmp_path / "signer"
    d.mkdir()
    (d / "keyconf.xml").write_text("<keyConf/>\n")
    return d


@pytest.fixture
def watcher(oracle: Harness, signer_dir: Path) -> Iterator[KeyconfWatcher]:
    with KeyconfWatcher(signer_dir) as w:
        yield w


def _is(kind: str, name: str = "keyconf.xml") -> Callable[[WatchEvent], bool]:
    return lambda e: e.kind == kind and e.name == name


def test_watch_atomic_rename_into_dir_is_a_create(
    watcher: KeyconfWatcher, signer_dir: Path
) -> None:
    tmp = signer_dir / ".keyconf.xml.tmp"
    tmp.write_text("<keyConf>new</keyConf>\n")
    os.rename(tmp, signer_dir / "keyconf.xml")
    ev = watcher.wait_for(_is("ENTRY_CREATE"))
    assert ev.target
    assert watcher.wait_for(_is("ENTRY_CREATE", ".keyconf.xml.tmp")).target is False


def test_watch_in_place_write_and_chmod_are_modifies(
    watcher: KeyconfWatcher, signer_dir: Path
) -> None:
    with open(signer_dir / "keyconf.xml", "a") as f:
        f.write("<!-- edited -->\n")
    assert watcher.wait_for(_is("ENTRY_MODIFY")).target
    watcher.clear()
    os.chmod(signer_dir / "keyconf.xml", 0o600)
    assert watcher.wait_for(_is("ENTRY_MODIFY")).target


def test_watch_follows_the_old_directory_until_it_is_deleted(
    watcher: KeyconfWatcher, signer_dir: Path
) -> None:
    """Swapping the directory: the key stays on the old inode (still valid, deaf to the new
    directory) and becomes invalid only when the old directory is removed; X-Road's watcher
    then stops for good."""
    old = signer_dir.with_name("signer.old")
    os.rename(signer_dir, old)
    signer_dir.mkdir()
    (signer_dir / "keyconf.xml").write_text("<keyConf>replaced</keyConf>\n")
    time.sleep(1.0)
    assert watcher.valid
    assert watcher.events() == []
    with open(old / "keyconf.xml", "a") as f:
        f.write("<!-- old -->\n")
    assert watcher.wait_for(_is("ENTRY_MODIFY")).target  # the old file, same name
    shutil.rmtree(old)
    watcher.wait_invalid()
    assert not watcher.valid
