"""Generate realistic X-Road Security Server ``/etc/xroad`` trees.

The sync agent has to cope with what a real primary holds: INI files with ``;`` and inline ``#``
comments, a bash file sourced by the service launchers, credentials with restrictive modes, an
unreadable ``gpghome``, an in-flight ``tmpconf*.tmp`` and a ``keyconf.xml`` whose softToken keys
must each have a ``.p12`` next to it.  The ``demo`` command and the tests both need such a tree,
and neither may depend on files outside the project, so the content is produced here.

Key changes are made the way X-Road's signer makes them (new ``.p12`` first, then ``keyconf.xml``
saved through ``tmpconf*.tmp`` + rename) so that tests exercise the same orderings, and races,
that the agent meets on a real primary.
"""

from __future__ import annotations

import base64
import os
import secrets
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from syncagent.xroad.formats import parse_xml
from syncagent.xroad.paths import (
    KEYCONF_PATH,
    SOFTTOKEN_DIR,
    XROAD_PROPERTIES,
    softtoken_keys,
)

__all__ = [
    "add_softtoken_key",
    "build_primary_tree",
    "build_secondary_local",
    "remove_softtoken_key",
]

KEYCONF = KEYCONF_PATH

# Modes as a real Security Server has them (see install-etc-xroad in the project notes).
DIR_MODE = 0o750
FILE_MODE = 0o640
SECRET_FILE_MODE = 0o660  # keyconf.xml and ssl/*: group xroad writes them
PRIVATE_MODE = 0o600
MARKER_MODE = 0o440
_DIR_MODES: dict[str, int] = {"": 0o751, "jetty": 0o751, "gpghome": 0o700}

_XROAD_NS = "http://x-road.eu/xsd/xroad.xsd"
_ID_NS = "http://x-road.eu/xsd/identifiers"
_P12_SIZE = 2595


def _hex_id() -> str:
    """X-Road key and certificate ids are 40 uppercase hex digits (a SHA-1 hash)."""
    return secrets.token_hex(20).upper()


def _b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode("ascii")


def _pem(label: str, size: int) -> bytes:
    """PEM-shaped text: enough for anything that only checks the armour, never parsed as DER."""
    body = "\n".join(textwrap.wrap(_b64(size), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode("ascii")


# --------------------------------------------------------------------------------------------
# keyconf.xml: the one place that renders and parses it, so add/remove stay consistent.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    """What keyconf.xml says about one softToken key; re-derived from the file on every change."""

    key_id: str
    usage: str
    label: str
    public_key: str
    cert_id: str
    cert: str
    member_code: str

    @classmethod
    def new(cls, usage: str, member_code: str) -> _Key:
        label = "Auth key" if usage == "AUTHENTICATION" else "Sign key"
        return cls(_hex_id(), usage, label, _b64(294), _hex_id(), _b64(1100), member_code)


def _render_key(key: _Key) -> str:
    member = ""
    if key.usage == "SIGNING":
        member = (
            '                <memberId ns2:objectType="MEMBER">\n'
            "                    <ns2:xRoadInstance>DEV</ns2:xRoadInstance>\n"
            "                    <ns2:memberClass>COM</ns2:memberClass>\n"
            f"                    <ns2:memberCode>{escape(key.member_code)}</ns2:memberCode>\n"
            "                </memberId>\n"
        )
    label = escape(key.label)
    return (
        f'        <key usage="{escape(key.usage)}">\n'
        f"            <friendlyName>{label}</friendlyName>\n"
        f"            <label>{label}</label>\n"
        f"            <keyId>{key.key_id}</keyId>\n"
        f"            <publicKey>{key.public_key}</publicKey>\n"
        f'            <cert active="true" id="{key.cert_id}">\n'
        f"{member}"
        f"                <contents>{key.cert}</contents>\n"
        "                <status>registered</status>\n"
        "                <nextRenewalTime>2045-10-17T22:11:01.000Z</nextRenewalTime>\n"
        "            </cert>\n"
        "            <signMechanismName>CKM_RSA_PKCS</signMechanismName>\n"
        "        </key>\n"
    )


def _render_keyconf(keys: Iterable[_Key]) -> bytes:
    """Serialise keyconf.xml the way the signer writes it (JAXB layout, namespaces, indent)."""
    body = "".join(_render_key(k) for k in keys)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<ns3:keyConf xmlns:ns2="{_ID_NS}" xmlns:ns3="{_XROAD_NS}">\n'
        "    <device>\n"
        "        <deviceType>softToken</deviceType>\n"
        "        <friendlyName>softToken-0</friendlyName>\n"
        "        <id>0</id>\n"
        "        <pinIndex>0</pinIndex>\n"
        f"{body}"
        "    </device>\n"
        "</ns3:keyConf>\n"
    ).encode()


def _parse_softtoken_keys(keyconf_xml: bytes) -> list[_Key]:
    """Every softToken key with what re-rendering it needs (which keys: xroad.softtoken_keys)."""
    keys: list[_Key] = []
    for key in softtoken_keys(parse_xml(keyconf_xml)):
        cert = key.find("cert")
        keys.append(
            _Key(
                key_id=(key.findtext("keyId") or "").strip(),
                usage=key.get("usage", "SIGNING"),
                label=key.findtext("label") or "",
                public_key=(key.findtext("publicKey") or "").strip(),
                cert_id=cert.get("id", "") if cert is not None else "",
                cert=(cert.findtext("contents") or "").strip() if cert is not None else "",
                member_code=(key.findtext(f"cert/memberId/{{{_ID_NS}}}memberCode") or "").strip(),
            )
        )
    return keys


# --------------------------------------------------------------------------------------------
# Static content of a primary.
# --------------------------------------------------------------------------------------------

_PROXY_INI = """\
; Main security server configuration file. Default values of every component;
; operators override them in local.ini, never here (package upgrades replace it).

; =============================================================================
; Client Proxy and Server Proxy
[proxy]

; Listen address and ports of the Client Proxy
connector-host=0.0.0.0
client-http-port=8080
client-https-port=8443

; Client Proxy to Server Proxy connection timeout in milliseconds
client-timeout=30000

; Server Proxy port as seen from other security servers
server-port=5500
server-listen-address=0.0.0.0
server-listen-port=5500

; Location of the anchor and of the downloaded global configuration
configuration-anchor-file=/etc/xroad/configuration-anchor.xml
configuration-path=/etc/xroad/globalconf/
database-properties=/etc/xroad/db.properties
jetty-serverproxy-configuration-file=/etc/xroad/jetty/serverproxy.xml

; Backups are always signed; encrypted only when true
backup-encryption-enabled=false

; =============================================================================
[anti-dos]
enabled=true
max-parallel-connections=5000
; >= 1.0 disables the check
max-cpu-load=1.1

; =============================================================================
[configuration-client]
port=5665
update-interval=60
"""

_LOCAL_INI = """\
[proxy-ui-api]
rate-limit-enabled=true
rate-limit-requests-per-second=100
wsdl-validator-command = /usr/share/xroad/wsdlvalidator/bin/wsdlvalidator_wrapper.sh
[proxy]
backup-encryption-enabled = true
backup-encryption-keyids = "backup.key1@example.org, backup.key2@example.org"
ssl-enabled=false # remove once a functional AUTH certificate is configured
health-check-port=5588
server-conf-cache-period=60
[configuration-client]
update-interval = 60
global-conf-tls-cert-verification = false
[message-log]
messagelog-keystore=/etc/xroad/messagelog/messagelog.p12
messagelog-keystore-password=somepassword
archive-encryption-enabled=true
[signer]
enforce-token-pin-policy=true
# shorter polling for test environments
[op-monitor-buffer]
socket-timeout-seconds=1
"""

_MESSAGE_LOG_INI = """\
; Message log add-on.
[message-log]

; Timestamper client timeouts in milliseconds; zero means infinite.
timestamper-client-connect-timeout=20000
timestamper-client-read-timeout=60000

; Time-stamp each request synchronously (security policy) or in batches.
timestamp-immediately=false
timestamp-records-limit=10000

; Seconds time-stamping may fail before the message log refuses messages.
acceptable-timestamp-failure-period=14400

; Archiving: Quartz cron expression, target directory, hash algorithm.
archive-interval=0 0 0/6 1/1 * ? *
archive-path=/var/lib/xroad/
hash-algo-id=SHA-512
archive-transfer-command=

;archive-transaction-batch=10000
message-body-logging=true
"""

_DEVICES_INI = """\
; Secure Signature Creation Devices (PKCS#11 tokens) used by the signer.
;
; [device_uid]
; enabled = BOOLEAN (optional, default: true)
; library = STRING
;   Path to the PKCS#11 library of the device driver.
; sign_verify_pin = BOOLEAN (optional, default: false)
; token_id_format = STRING (optional, default: {moduleType}{slotIndex}{serialNumber}{label})
; sign_mechanism = STRING (optional, default: CKM_RSA_PKCS)
;
; Example:
; [etoken]
; library = /usr/lib/libeTPkcs11.so
"""

_LOGBACK_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<configuration scan="true">
    <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
        <file>/var/log/xroad/proxy.log</file>
        <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
            <fileNamePattern>/var/log/xroad/proxy.%i.log.zip</fileNamePattern>
            <minIndex>1</minIndex>
            <maxIndex>10</maxIndex>
        </rollingPolicy>
        <encoder>
            <pattern>%d{yyyy-MM-dd HH:mm:ss.SSSXXX} [%thread] %level %logger{36} - %msg%n</pattern>
        </encoder>
    </appender>
    <root level="${XROAD_ROOT_LOG_LEVEL:-WARN}">
        <appender-ref ref="FILE"/>
    </root>
</configuration>
"""

_ANCHOR_XML = f"""\
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns3:configurationAnchor xmlns:ns2="{_ID_NS}" xmlns:ns3="{_XROAD_NS}">
    <generatedAt>2024-03-16T14:57:48.915Z</generatedAt>
    <instanceIdentifier>DEV</instanceIdentifier>
    <source>
        <downloadURL>http://cs/internalconf</downloadURL>
        <verificationCert>{{cert}}</verificationCert>
    </source>
</ns3:configurationAnchor>
"""

_PRIVATE_PARAMS_XML = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<tns:conf xmlns:id="{_ID_NS}" xmlns:tns="{_XROAD_NS}">
    <instanceIdentifier>EE</instanceIdentifier>
    <managementService>
        <authCertRegServiceAddress>http://cs:4001/managementservice</authCertRegServiceAddress>
        <managementRequestServiceProviderId id:objectType="SUBSYSTEM">
            <id:xRoadInstance>EE</id:xRoadInstance>
            <id:memberClass>GOV</id:memberClass>
            <id:memberCode>0000</id:memberCode>
            <id:subsystemCode>MANAGEMENT</id:subsystemCode>
        </managementRequestServiceProviderId>
    </managementService>
    <timeStampingIntervalSeconds>60</timeStampingIntervalSeconds>
</tns:conf>
"""

_SERVERPROXY_XML = """\
<?xml version="1.0"?>
<!DOCTYPE Configure PUBLIC "-//Jetty//Configure//EN" "http://www.eclipse.org/jetty/configure_10_0.dtd">
<Configure id="Server" class="org.eclipse.jetty.server.Server">
    <Get name="ThreadPool">
        <Set name="minThreads" type="int">20</Set>
        <Set name="maxThreads" type="int">500</Set>
        <Set name="idleTimeout" type="int">60000</Set>
    </Get>
</Configure>
"""


def _primary_files() -> dict[str, tuple[bytes, int]]:
    """Everything except keyconf.xml and the per-key .p12 files, which depend on the key list."""
    text: dict[str, tuple[str, int]] = {
        "conf.d/common.ini": (
            "; Properties shared by all components\n[common]\n\n"
            "; Where temporary files go\ntemp-files-path=/var/tmp/xroad/\n",
            FILE_MODE,
        ),
        "conf.d/proxy.ini": (_PROXY_INI, FILE_MODE),
        "conf.d/signer.ini": (
            "; Signer\n[signer]\n\n; Device configuration (PKCS#11)\n"
            "device-configuration-file=/etc/xroad/devices.ini\n\n"
            "; Runtime key configuration\nkey-configuration-file=/etc/xroad/signer/keyconf.xml\n"
            "client-timeout=50000\n;module-instance-provider=com.foo.barImpl\nkey-length=2048\n",
            FILE_MODE,
        ),
        "conf.d/proxy-ui-api.ini": (
            "; REST API of the admin UI\n[proxy-ui-api]\n\n"
            "ssl-properties=/etc/xroad/ssl.properties\n"
            "auth-cert-reg-signature-digest-algorithm-id=SHA-512\n",
            FILE_MODE,
        ),
        "conf.d/local.ini": (_LOCAL_INI, FILE_MODE),
        "conf.d/override-docker.ini": ("[proxy]\nhealth-check-port=5588\n", FILE_MODE),
        "conf.d/addons/message-log.ini": (_MESSAGE_LOG_INI, FILE_MODE),
        "conf.d/node.ini": ("[node]\ntype = master\n", FILE_MODE),
        "conf.d/variables-logback.properties": (
            "XROAD_LOG_LEVEL=INFO\nXROAD_ROOT_LOG_LEVEL=WARN\n",
            FILE_MODE,
        ),
        "conf.d/proxy-logback.xml": (_LOGBACK_XML, FILE_MODE),
        "services/local.conf": (
            "# Local overrides sourced by the X-Road service launchers (bash syntax).\n"
            'XROAD_PROXY_PARAMS="$XROAD_PROXY_PARAMS -Xmx1536m"\n'
            'XROAD_SIGNER_PARAMS="$XROAD_SIGNER_PARAMS -Xmx256m"\n',
            FILE_MODE,
        ),
        "services/local.properties": ("XROAD_SIGNER_PARAMS=-Xmx256m\n", FILE_MODE),
        "devices.ini": (_DEVICES_INI, FILE_MODE),
        "db.properties": (
            "serverconf.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/serverconf\n"
            "serverconf.hibernate.connection.username=serverconf\n"
            f"serverconf.hibernate.connection.password={secrets.token_urlsafe(18)}\n",
            FILE_MODE,
        ),
        "configuration-anchor.xml": (_ANCHOR_XML.format(cert=_b64(680)), FILE_MODE),
        "globalconf/EE/private-params.xml": (_PRIVATE_PARAMS_XML, FILE_MODE),
        "globalconf/instance-identifier": ("EE\n", FILE_MODE),
        XROAD_PROPERTIES: (
            "[database-properties]\n"
            "serverconf.database.admin_user = serverconf_admin\n"
            f"serverconf.database.admin_password = {secrets.token_urlsafe(18)}\n"
            f"postgres.connection.password = {secrets.token_urlsafe(18)}\n",
            PRIVATE_MODE,
        ),
        "backup.d/10_xroad-confclient": ("", MARKER_MODE),
        "backup.d/20_xroad-proxy": ("", MARKER_MODE),
        "backup.d/30_xroad-signer": ("", MARKER_MODE),
        "jetty/serverproxy.xml": (_SERVERPROXY_XML, FILE_MODE),
        "VERSION": ("7.6.2\n", FILE_MODE),
        # An atomic save caught half-way: the agent must never copy it.
        "signer/tmpconf123456.tmp": ("half-written", FILE_MODE),
    }
    files = {rel: (content.encode(), mode) for rel, (content, mode) in text.items()}
    files.update(
        {
            f"{SOFTTOKEN_DIR}/.softtoken.p12": (os.urandom(2547), FILE_MODE),
            "ssl/internal.crt": (_pem("CERTIFICATE", 820), SECRET_FILE_MODE),
            "ssl/internal.key": (_pem("PRIVATE KEY", 1218), SECRET_FILE_MODE),
            "ssl/internal.p12": (os.urandom(2596), SECRET_FILE_MODE),
            "ssl/proxy-ui-api.crt": (_pem("CERTIFICATE", 826), SECRET_FILE_MODE),
            "ssl/proxy-ui-api.key": (_pem("PRIVATE KEY", 1218), SECRET_FILE_MODE),
            "gpghome/pubring.kbx": (os.urandom(1024), PRIVATE_MODE),
        }
    )
    return files


# --------------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------------


def _ensure_dirs(root: Path, rel: str) -> None:
    """mkdir each missing parent with its real mode; chmod explicitly because umask interferes."""
    parts = Path(rel).parent.parts
    for depth in range(len(parts) + 1):
        sub = "/".join(parts[:depth])
        path = root / sub if sub else root
        path.mkdir(exist_ok=True)
        path.chmod(_DIR_MODES.get(sub, DIR_MODE))


def _write(root: Path, rel: str, content: bytes, mode: int) -> Path:
    _ensure_dirs(root, rel)
    path = root / rel
    path.write_bytes(content)
    path.chmod(mode)
    return path


def _apply_owner(root: Path, owner: tuple[int, int]) -> None:
    """xroad.properties stays root's: it holds the DB admin password (and xroad-slave must fail)."""
    for path in [root, *root.rglob("*")]:
        if path.relative_to(root).as_posix() == XROAD_PROPERTIES:
            os.lchown(path, 0, 0)
        else:
            os.lchown(path, *owner)


def _apply_mtime(paths: Iterable[Path], mtime: float) -> None:
    """Deepest first, so setting a directory's time is not undone by touching its children."""
    for path in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def build_primary_tree(
    root: Path,
    *,
    keys: int = 3,
    mtime: float | None = None,
    owner: tuple[int, int] | None = None,
) -> list[str]:
    """Write a primary ``/etc/xroad`` into ``root``; return the softToken keyIds in keyconf order.

    ``mtime`` lets tests put every timestamp safely in the past, so that an agent which distrusts
    "racy" (too recent) mtimes does not re-fetch everything; ``owner`` makes the tree readable to
    the ``xroad`` group as on a real primary, which is what the read-only ``xroad-slave`` needs.
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in _primary_files().items():
        _write(root, rel, content, mode)
    key_list = [
        _Key.new("AUTHENTICATION" if i == 0 else "SIGNING", f"{1000 + i}") for i in range(keys)
    ]
    for key in key_list:
        _write(root, f"{SOFTTOKEN_DIR}/{key.key_id}.p12", os.urandom(_P12_SIZE), FILE_MODE)
    _write(root, KEYCONF, _render_keyconf(key_list), SECRET_FILE_MODE)
    if owner is not None:
        _apply_owner(root, owner)
    if mtime is not None:
        _apply_mtime([root, *root.rglob("*")], mtime)
    return [k.key_id for k in key_list]


def _copy_owner(path: Path, like: Path) -> None:
    """Files we create as root must stay readable to the tree's group, like the signer's own."""
    if os.geteuid() == 0:
        st = like.stat()
        os.lchown(path, st.st_uid, st.st_gid)


def _save_keyconf(root: Path, keys: list[_Key]) -> list[Path]:
    """X-Road's atomic save: ``tmpconf<digits>.tmp`` in ``signer/``, then rename over keyconf.xml.

    The rename is what the secondary's signer WatchService sees as a create event, and the .tmp
    is what an agent scanning the primary mid-save must skip.
    """
    keyconf = root / KEYCONF
    signer = keyconf.parent
    while True:
        tmp = signer / f"tmpconf{secrets.randbelow(10**18)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_render_keyconf(keys))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(SECRET_FILE_MODE)
        _copy_owner(tmp, keyconf if keyconf.exists() else signer)
        os.replace(tmp, keyconf)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return [keyconf, signer]


def add_softtoken_key(root: Path, *, mtime: float | None = None) -> str:
    """Add a SIGNING key in the signer's order: .p12 first, keyconf.xml last (atomically).

    ``mtime``, if given, is applied to the files written and the directories they changed.
    """
    keys = _parse_softtoken_keys((root / KEYCONF).read_bytes())
    key = _Key.new("SIGNING", f"{1000 + len(keys)}")
    softtoken = root / SOFTTOKEN_DIR
    p12 = softtoken / f"{key.key_id}.p12"
    fd = os.open(p12, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(_P12_SIZE))
        fh.flush()
        os.fsync(fh.fileno())
    p12.chmod(FILE_MODE)
    _copy_owner(p12, softtoken)
    touched = [p12, softtoken, *_save_keyconf(root, [*keys, key])]
    if mtime is not None:
        _apply_mtime(touched, mtime)
    return key.key_id


def remove_softtoken_key(root: Path, key_id: str) -> None:
    """Drop a key in the safe order: keyconf.xml stops referencing it before the .p12 goes.

    Raises KeyError if keyconf.xml does not list ``key_id``.
    """
    keys = _parse_softtoken_keys((root / KEYCONF).read_bytes())
    remaining = [k for k in keys if k.key_id != key_id]
    if len(remaining) == len(keys):
        raise KeyError(key_id)
    _save_keyconf(root, remaining)
    (root / SOFTTOKEN_DIR / f"{key_id}.p12").unlink(missing_ok=True)


def build_secondary_local(target: Path) -> None:
    """Write what a secondary image owns and a sync must never overwrite or delete.

    Content differs from the primary's on purpose, so tests can tell whether a sync clobbered it.
    """
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes, int]] = {
        "conf.d/node.ini": (b"[node]\ntype = slave\n", FILE_MODE),
        XROAD_PROPERTIES: (
            b"[database-properties]\nserverconf.database.admin_user = serverconf_admin\n"
            + f"serverconf.database.admin_password = {secrets.token_urlsafe(18)}\n".encode(),
            PRIVATE_MODE,
        ),
        "gpghome/pubring.kbx": (b"secondary-keyring\n", PRIVATE_MODE),
        "globalconf/instance-identifier": (b"EE\n", FILE_MODE),
    }
    for rel, (content, mode) in files.items():
        _write(target, rel, content, mode)
