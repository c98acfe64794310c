"""Realistic /etc/xroad trees of a security server, X-Road 7 and X-Road 8, for the oracle tests.

A validator that must accept whatever X-Road accepts is best tested on what a real server has:
every file its packages install, plus what its admin guides tell an operator to create. The
shapes were learnt from X-Road's sources (paths below are in nordic-institute/X-Road, branch
develop = 7.8.x, develop-8.x = 8.0); the content is written here, not copied: comments, values,
names and keys are this module's own, and keys and certificates are generated fresh.

Each builder returns an :class:`EtcTree` telling, for every file, which X-Road reader reads it
(:data:`READERS`), so a test can hand each file to the matching oracle reader.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

# Which program reads a file, i.e. which oracle mode (tests/support/readers.py) judges it:
#   ini         SystemPropertiesLoader (conf.d/*.ini, addons/*.ini)      -> read_ini
#   devices     the signer's ModuleConf (devices.ini)                    -> read_devices
#   properties  java.util.Properties.load(InputStream)                   -> read_properties
#   acme, mail  X-Road 7's typed SnakeYAML load                          -> read_yaml(flavour)
#   yaml-smallrye / yaml-spring  X-Road 8's local.yaml readers           -> read_yaml(flavour)
#   yaml        parsed by nobody in X-Road (examples), plain SnakeYAML   -> read_yaml("yaml")
#   keyconf     the signer's JAXB unmarshaller (signer/keyconf.xml)       -> read_keyconf
#   xml, json   logback/jetty/confclient XML; globalconf metadata JSON
#   bash        sourced or read by the launch scripts (services/*)
#   mapping     message-log archive-encryption mapping (own line format, not INI)
#   pkcs12, gpg, pem, empty, text   binary keystores, keyring, PEM, backup.d markers, VERSION
READERS = (
    "ini",
    "devices",
    "properties",
    "acme",
    "mail",
    "yaml",
    "yaml-smallrye",
    "yaml-spring",
    "keyconf",
    "xml",
    "json",
    "bash",
    "mapping",
    "pkcs12",
    "gpg",
    "pem",
    "empty",
    "text",
)

INSTANCE = "DEV"
OWNER_CLASS = "COM"
OWNER_CODE = "1710128-9"
SERVER_CODE = "ss-primary"
SOFTTOKEN_PIN = b"Xr0ad-Token-Pin"

# modes as the packages' postinst scripts leave them (xroad-base, xroad-proxy, xroad-signer)
DIR_MODE = 0o750
FILE_MODE = 0o640
ETC_MODE = 0o751  # xroad-base.postinst: chmod 0751 /etc/xroad
JETTY_DIR_MODE = 0o751  # xroad-proxy.postinst
BACKUP_D_MODE = 0o440  # backup.d markers: chmod 0440
KEYCONF_MODE = 0o660
SECRET_MODE = 0o600
GPGHOME_MODE = 0o700


@dataclass(frozen=True)
class SoftKey:
    """A software-token key: its usage, the member a signing key belongs to, and what the
    builder generated (make_soft_key)."""

    usage: str  # "AUTHENTICATION" or "SIGNING"
    member_code: str = OWNER_CODE
    member_class: str = OWNER_CLASS
    key_id: str = ""
    public_key_der: bytes = b""
    cert_der: bytes = b""
    p12: bytes = b""


@dataclass
class EtcTree:
    """What a builder wrote: the root, every file's reader and mode, and the soft keys."""

    root: Path
    readers: dict[str, str] = field(default_factory=dict)  # relative path -> reader
    modes: dict[str, int] = field(default_factory=dict)  # relative path -> mode (files, dirs)
    keys: list[SoftKey] = field(default_factory=list)
    outside: dict[str, Path] = field(
        default_factory=dict
    )  # files beside the tree (xroad.properties)

    def by_reader(self, reader: str) -> list[Path]:
        return sorted(self.root / rel for rel, r in self.readers.items() if r == reader)

    def write(self, rel: str, data: bytes | str, reader: str, mode: int = FILE_MODE) -> Path:
        if reader not in READERS:
            raise ValueError(reader)
        path = self.root / rel
        self.mkdir(str(Path(rel).parent))
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)
        self.readers[rel] = reader
        self.modes[rel] = mode
        return path

    def mkdir(self, rel: str, mode: int = DIR_MODE) -> Path:
        """Create rel (and missing parents, DIR_MODE) once; its mode is the one it was first
        made with."""
        path = self.root / rel
        if rel in ("", ".") or path.is_dir():
            return path
        self.mkdir(str(Path(rel).parent))
        path.mkdir()
        os.chmod(path, mode)
        self.modes[rel] = mode
        return path


# ----------------------------------------------------------------------------------------------
# key material
# ----------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FI"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Operator Oy"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _self_signed(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_soft_key(
    usage: str, member_class: str = OWNER_CLASS, member_code: str = OWNER_CODE
) -> SoftKey:
    """A fresh EC key with a self-signed certificate, stored as the soft token stores it: a
    PKCS#12 under the token PIN, named by the keyId (40 hex: keyconf.xsd documents keyId as
    a hash of the public key; SHA-1 of its DER here)."""
    cn = f"{INSTANCE}/{member_class}/{member_code}"
    key, cert = _self_signed(cn)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_id = hashlib.sha1(spki, usedforsecurity=False).hexdigest().upper()
    p12 = pkcs12.serialize_key_and_certificates(
        key_id.encode(), key, cert, None, serialization.BestAvailableEncryption(SOFTTOKEN_PIN)
    )
    return SoftKey(
        usage=usage,
        member_code=member_code,
        member_class=member_class,
        key_id=key_id,
        public_key_der=spki,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
        p12=p12,
    )


def keyconf_xml(keys: Sequence[SoftKey]) -> str:
    """signer/keyconf.xml as the signer's JAXB writes it: root keyConf in the xroad.xsd
    namespace, one softToken device (id 0), keys with friendlyName, keyId, publicKey, certs
    (signing certs carry a memberId in the identifiers namespace). Element order per
    signer-core/src/main/resources/keyconf.xsd (KeyType, CertificateType sequences)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        '<ns3:keyConf xmlns:ns2="http://x-road.eu/xsd/identifiers"'
        ' xmlns:ns3="http://x-road.eu/xsd/xroad.xsd">',
        "    <device>",
        "        <deviceType>softToken</deviceType>",
        "        <friendlyName>softToken-0</friendlyName>",
        "        <id>0</id>",
        "        <pinIndex>1</pinIndex>",
    ]
    for n, k in enumerate(keys):
        friendly = "Auth key" if k.usage == "AUTHENTICATION" else f"Sign key {k.member_code}"
        out += [
            f'        <key usage="{k.usage}">',
            f"            <friendlyName>{friendly} #{n}</friendlyName>",
            f"            <label>{k.key_id}</label>",
            f"            <keyId>{k.key_id}</keyId>",
            "            <publicKey>"
            + base64.b64encode(k.public_key_der).decode()
            + "</publicKey>",
            '            <cert active="true">',
        ]
        if k.usage == "SIGNING":
            out += [
                '                <memberId ns2:objectType="MEMBER">',
                f"                    <ns2:xRoadInstance>{INSTANCE}</ns2:xRoadInstance>",
                f"                    <ns2:memberClass>{k.member_class}</ns2:memberClass>",
                f"                    <ns2:memberCode>{k.member_code}</ns2:memberCode>",
                "                </memberId>",
            ]
        out += [
            "                <contents>" + base64.b64encode(k.cert_der).decode() + "</contents>",
            "                <status>registered</status>"
            if k.usage == "AUTHENTICATION"
            else "                <status>in use</status>",
            "            </cert>",
            "            <signMechanismName>CKM_ECDSA</signMechanismName>",
            "        </key>",
        ]
    out += ["    </device>", "</ns3:keyConf>", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# X-Road 7 content (own text; shapes from src/packages/src/xroad/default-configuration/*)
# ----------------------------------------------------------------------------------------------

COMMON_INI = """\
; Settings shared by every X-Road component on this host (xroad-base).
[common]
; where components keep temporary files
temp-files-path=/var/tmp/xroad/
"""

PROXY_INI = """\
; Client proxy and server proxy (xroad-proxy).

[proxy]
; interface the client proxy listens on; 0.0.0.0 accepts every interface
connector-host=0.0.0.0
; connect timeout towards other security servers, ms
client-timeout=30000
; downloaded global configuration
configuration-path=/etc/xroad/globalconf/
; jetty settings of the two proxies
jetty-clientproxy-configuration-file=/etc/xroad/jetty/clientproxy.xml
jetty-serverproxy-configuration-file=/etc/xroad/jetty/serverproxy.xml
jetty-ocsp-responder-configuration-file=/etc/xroad/jetty/ocsp-responder.xml
; TLS towards clients (a comma list that must stay one value)
client-tls-ciphers=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
server-listen-port=5500
ocsp-responder-port=5577
health-check-port=0
"""

SIGNER_INI = """\
; =====================================================================
; Signer (xroad-signer)
[signer]
; hardware token drivers
device-configuration-file=/etc/xroad/devices.ini
; keys and certificates of every token
key-configuration-file=/etc/xroad/signer/keyconf.xml
client-timeout=50000
;module-instance-provider=org.example.ModuleProvider
key-length=2048
key-named-curve=secp256r1
; SHA-256, SHA-384 or SHA-512
csr-signature-digest-algorithm=SHA-256
"""

PROXY_UI_API_INI = """\
; Management REST API and admin UI (xroad-proxy-ui-api).
[proxy-ui-api]
ssl-properties=/etc/xroad/ssl.properties
; SHA-256, SHA-384 or SHA-512
auth-cert-reg-signature-digest-algorithm-id=SHA-512
"""

OP_MONITOR_INI = """\
; Operational monitoring daemon (xroad-opmonitor).
[op-monitor]
host=localhost
port=2080
; http or https
scheme=http
keep-records-for-days=7
; Quartz cron: seconds minutes hours day-of-month month day-of-week [year]
clean-interval=0 0 0/12 1/1 * ? *
max-records-in-payload=10000
records-available-timestamp-offset-seconds=60
health-statistics-period-seconds=600
"""

MESSAGE_LOG_INI = """\
; Message log add-on (xroad-addon-messagelog).
[message-log]
; timestamper timeouts in ms; 0 waits forever
timestamper-client-connect-timeout=20000
timestamper-client-read-timeout=60000
timestamp-immediately=false
timestamp-records-limit=10000
acceptable-timestamp-failure-period=14400
keep-records-for=30
archive-max-filesize=33554432
; every six hours
archive-interval=0 0 0/6 1/1 * ? *
archive-path=/var/lib/xroad/
;archive-transaction-batch=10000
clean-interval=0 0 3/6 1/1 * ? *
hash-algo-id=SHA-512
; empty: nothing runs after archiving
archive-transfer-command=
message-body-logging=true
"""

MONITOR_INI = """\
[env-monitor]
port = 2552
limit-remote-data-set = false
"""

OVERRIDE_FI_INI = """\
; Country defaults of the FI meta-package (xroad-securityserver-fi).
[signer]
key-length=3072
enforce-token-pin-policy=true
[proxy]
client-tls-protocols=TLSv1.2
server-min-supported-client-version=7.6.0
[proxy-ui-api]
acme-challenge-port-enabled=true
[message-log]
message-body-logging=false
"""

NODE_INI = "[node]\ntype={node_type}\n"

# What an operator adds, as the guides tell (see ADMIN_GUIDE_FILES): backup encryption,
# message-log archive encryption and grouping, body encryption, a local connector host.
LOCAL_INI = """\
; Local overrides. Add settings under the section of their component.
[proxy]
connector-host = 10.40.0.15
backup-encryption-enabled = true
backup-encryption-keyids = 8E0A9C3B2D4F6A71, 5C1E7B9D3A2F4E60

[message-log]
archive-encryption-enabled = true
archive-grouping = member
archive-encryption-keys-config = /etc/xroad/messagelog/archive-encryption-mapping.ini
messagelog-encryption-enabled = true
messagelog-keystore = /etc/xroad/messagelog/messagelog.p12
messagelog-keystore-password = Kx7-keystore-pass
messagelog-key-id = key1
"""

DEVICES_INI = """\
; Secure signature creation devices (hardware tokens) the signer loads.
; One section per device; the section name is the device's UID.
;
; [uid]
; enabled = true|false            (default true)
; library = /path/to/pkcs11.so
; sign_verify_pin = true|false    (default false)
; token_id_format = {moduleType}{slotIndex}{serialNumber}{label}
; slot_ids = comma separated slot ids (optional)
;
; Example:
;[hsm-primary]
;library = /usr/lib/softhsm/libsofthsm2.so
"""

DB_PROPERTIES_7 = """\
# connection.url: jdbc:postgresql://<host>:<port>/<database>
serverconf.hibernate.jdbc.use_streams_for_binary = true
serverconf.hibernate.connection.driver_class = org.postgresql.Driver
serverconf.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/serverconf
serverconf.hibernate.hikari.dataSource.currentSchema = serverconf,public
serverconf.hibernate.connection.username = serverconf
serverconf.hibernate.connection.password = Pq4-serverconf-Gen
messagelog.hibernate.jdbc.use_streams_for_binary = true
messagelog.hibernate.connection.driver_class = org.postgresql.Driver
messagelog.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/messagelog
messagelog.hibernate.hikari.dataSource.currentSchema = messagelog,public
messagelog.hibernate.connection.username = messagelog
messagelog.hibernate.connection.password = Ml8-messagelog-Gen
op-monitor.hibernate.jdbc.use_streams_for_binary = true
op-monitor.hibernate.connection.driver_class = org.postgresql.Driver
op-monitor.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/op-monitor
op-monitor.hibernate.hikari.dataSource.currentSchema = opmonitor,public
op-monitor.hibernate.connection.username = opmonitor
op-monitor.hibernate.connection.password = Om2-opmonitor-Gen
"""

ROOT_PROPERTIES = """\
postgres.connection.password = Rt6-postgres-admin
serverconf.database.admin_user = serverconf_admin
serverconf.database.admin_password = Sa1-serverconf-admin
messagelog.database.admin_user = messagelog_admin
messagelog.database.admin_password = Ma3-messagelog-admin
op-monitor.database.admin_user = opmonitor_admin
op-monitor.database.admin_password = Oa5-opmonitor-admin
"""

VARIABLES_LOGBACK = "XROAD_LOG_LEVEL=INFO\nXROAD_ROOT_LOG_LEVEL=WARN\n"


def _logback(log_name: str, *, with_variables: bool = False) -> str:
    variables = (
        '    <property file="/etc/xroad/conf.d/variables-logback.properties" />\n'
        if with_variables
        else ""
    )
    return f"""\
<?xml version="1.0" encoding="UTF-8" ?>
<configuration scan="true" scanPeriod="60 seconds">
{variables}    <property name="logDir" value="/var/log/xroad"/>
    <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
        <file>${{logDir}}/{log_name}.log</file>
        <rollingPolicy class="ch.qos.logback.core.rolling.SizeAndTimeBasedRollingPolicy">
            <fileNamePattern>${{logDir}}/{log_name}.%d{{yyyy-MM-dd}}.%i.log.zip</fileNamePattern>
            <maxFileSize>100MB</maxFileSize>
            <maxHistory>14</maxHistory>
        </rollingPolicy>
        <encoder>
            <pattern>%d{{yyyy-MM-dd HH:mm:ss.SSSXXX}} [%thread] %level %logger - %msg%n</pattern>
        </encoder>
    </appender>
    <logger name="ee.ria.xroad" level="${{XROAD_LOG_LEVEL:-INFO}}"/>
    <logger name="org.niis" level="${{XROAD_LOG_LEVEL:-INFO}}"/>
    <root level="${{XROAD_ROOT_LOG_LEVEL:-WARN}}">
        <appender-ref ref="FILE"/>
    </root>
</configuration>
"""


def _jetty(min_threads: int, max_threads: int) -> str:
    return f"""\
<?xml version="1.0"?>
<!DOCTYPE Configure PUBLIC "-//Jetty//Configure//EN" "http://www.eclipse.org/jetty/configure_10_0.dtd">
<Configure id="Server" class="org.eclipse.jetty.server.Server">
    <Get name="ThreadPool">
        <Set name="minThreads" type="int">{min_threads}</Set>
        <Set name="maxThreads" type="int">{max_threads}</Set>
        <Set name="idleTimeout" type="int">60000</Set>
    </Get>
</Configure>
"""


GLOBAL_CONF = """\
#!/bin/bash
# Package-owned: overwritten on upgrade. Put local changes in services/local.properties.
ADDON_PATH="/usr/share/xroad/jlib/addon"
umask 0027
export LD_LIBRARY_PATH="/usr/share/xroad/lib:$LD_LIBRARY_PATH"

apply_local_conf() {
  if [ -f /etc/xroad/services/local.conf ]; then
    local -r param_name="$1"
    # shellcheck disable=SC1091
    source /etc/xroad/services/local.conf
    printf -v "$param_name" '%s' "${!param_name}"
  fi
}
"""


def _service_conf(var: str, jar: str, logback: str, heap: str) -> str:
    return f"""\
#!/bin/bash
# Package-owned: overwritten on upgrade. Put local changes in services/local.properties.
XROAD_LOG_LEVEL="INFO"
. /etc/xroad/services/global.conf

CP="/usr/share/xroad/jlib/{jar}"
{var}="-Xmx{heap} -Dlogback.configurationFile=/etc/xroad/conf.d/{logback} ${var}"
apply_local_conf {var}
"""


LOCAL_CONF = """\
# Legacy local overrides (sourced by bash; replaced by local.properties since 7.0)
PROXY_PARAMS="$PROXY_PARAMS -Xmx1536m"
"""

LOCAL_PROPERTIES = """\
# XROAD_* variables only; read line by line by services/global.conf
XROAD_PROXY_PARAMS=-Xms256m -Xmx1536m
XROAD_SIGNER_PARAMS=-Xmx192m
"""

ARCHIVE_MAPPING = f"""\
# member identifier = GPG key id; one mapping per line, '#' starts a comment line
{INSTANCE}/{OWNER_CLASS}/{OWNER_CODE} = 8E0A9C3B2D4F6A71C3E5B7D9F1A3C5E7B9D1F3A5
{INSTANCE}/GOV/2286437-1 = 5C1E7B9D3A2F4E60718293A4B5C6D7E8F9012345
   {INSTANCE}/GOV/2286437-1 = 0F1E2D3C4B5A69788796A5B4C3D2E1F001234567
# '=' and '#' inside a member code are escaped
{INSTANCE}/ORG/code\\=with\\#specials = 11223344556677889900AABBCCDDEEFF00112233
"""

ACME_YML = f"""\
# External account binding credentials per CA and member (user guide, "Configuring ACME").
eab-credentials:
  certificate-authorities:
    'Test ACME CA':
      mac-key-base64-encoded: true
      members:
        '{INSTANCE}:{OWNER_CLASS}:{OWNER_CODE}':
          auth-kid: kid-auth-01
          auth-mac-key: c2VjcmV0LWF1dGgtbWFjLWtleS0wMQ==
          sign-kid: kid-sign-01
          sign-mac-key: c2VjcmV0LXNpZ24tbWFjLWtleS0wMQ==
    'Other CA':
      mac-key-base64-encoded: false
      members:
        '{INSTANCE}:GOV:2286437-1':
          kid: kid-gov-7
          mac-key: plain-mac-key-for-the-gov-member
# written by the server when it creates the ACME account keystore (ssl/acme.p12)
account-keystore-password: Ac9-generated-keystore-pw
"""

ACME_EXAMPLE_YML = """\
# Example only: copy to acme.yml and fill in.
eab-credentials:
  certificate-authorities:
    'Example CA':
      mac-key-base64-encoded: false
      members:
        'INSTANCE:CLASS:CODE':
          kid: example-kid
          mac-key: example-mac-key
account-keystore-password:
"""

MAIL_YML = f"""\
# mail server for ACME notifications
host: smtp.example.org
port: 587
username: xroad-notify
password: Nt3-smtp-pass
# true: SSL/TLS from the start; false or missing: STARTTLS
use-ssl-tls: false
contacts:
  '{INSTANCE}:{OWNER_CLASS}:{OWNER_CODE}': ops@example.org
  "{INSTANCE}:GOV:2286437-1": gov-admin@example.org
"""

MAIL_EXAMPLE_YML = """\
host: mail.example.org
port: 587
username: user
password: secret
use-ssl-tls: true
contacts:
  'INSTANCE:CLASS:CODE': member@example.org
"""


def _anchor_xml(instance: str, cert_der: bytes) -> str:
    return f"""\
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns3:configurationAnchor xmlns:ns2="http://x-road.eu/xsd/identifiers" \
xmlns:ns3="http://x-road.eu/xsd/xroad.xsd">
  <generatedAt>2025-03-04T09:12:33.120Z</generatedAt>
  <instanceIdentifier>{instance}</instanceIdentifier>
  <source>
    <downloadURL>http://cs.{instance.lower()}.example.org/internalconf</downloadURL>
    <verificationCert>{base64.b64encode(cert_der).decode()}</verificationCert>
  </source>
</ns3:configurationAnchor>
"""


def _private_params(instance: str) -> str:
    return f"""\
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns3:conf xmlns:ns2="http://x-road.eu/xsd/identifiers" xmlns:ns3="http://x-road.eu/xsd/xroad.xsd">
    <instanceIdentifier>{instance}</instanceIdentifier>
    <managementService>
        <authCertRegServiceAddress>https://cs.{instance.lower()}.example.org:4002/managementservice/</authCertRegServiceAddress>
        <managementRequestServiceProviderId ns2:objectType="SUBSYSTEM">
            <ns2:xRoadInstance>{instance}</ns2:xRoadInstance>
            <ns2:memberClass>GOV</ns2:memberClass>
            <ns2:memberCode>2286437-1</ns2:memberCode>
            <ns2:subsystemCode>MANAGEMENT</ns2:subsystemCode>
        </managementRequestServiceProviderId>
    </managementService>
    <timeStampingIntervalSeconds>60</timeStampingIntervalSeconds>
</ns3:conf>
"""


def _shared_params(instance: str, ca_der: bytes) -> str:
    ca = base64.b64encode(ca_der).decode()
    return f"""\
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ns3:conf xmlns:ns2="http://x-road.eu/xsd/identifiers" xmlns:ns3="http://x-road.eu/xsd/xroad.xsd">
    <instanceIdentifier>{instance}</instanceIdentifier>
    <approvedCA>
        <name>Test CA</name>
        <authenticationOnly>false</authenticationOnly>
        <topCA>
            <cert>{ca}</cert>
            <ocsp><url>http://ca.example.org:8888/ocsp</url></ocsp>
        </topCA>
        <certificateProfileInfoProvider>ee.ria.xroad.common.certificateprofile.impl.FiVRKCertificateProfileInfoProvider</certificateProfileInfoProvider>
    </approvedCA>
    <member id="m1">
        <memberClass><code>{OWNER_CLASS}</code><description>Companies</description></memberClass>
        <memberCode>{OWNER_CODE}</memberCode>
        <name>Test Operator Oy</name>
    </member>
    <securityServer>
        <owner>m1</owner>
        <serverCode>{SERVER_CODE}</serverCode>
        <address>ss1.example.org</address>
    </securityServer>
</ns3:conf>
"""


def _metadata(content: str, instance: str) -> str:
    """globalconf/<INSTANCE>/<file>.metadata: the confclient's JSON (contentIdentifier,
    instanceIdentifier, expirationDate), as in globalconf-core's test resources."""
    return json.dumps(
        {
            "contentIdentifier": content,
            "instanceIdentifier": instance,
            "expirationDate": "2125-01-01T00:00:00Z",
        },
        separators=(",", ":"),
    )


def _gpghome(tree: EtcTree) -> None:
    """A GnuPG home as the server's backup/archive signing keyring leaves it (0700, pubring.kbx,
    trustdb.gpg, private-keys-v1.d/<keygrip>.key, openpgp-revocs.d/<fpr>.rev). The contents are
    placeholders, not a usable keyring: no X-Road reader parses them, syncagent only copies."""
    tree.mkdir("gpghome", GPGHOME_MODE)
    tree.mkdir("gpghome/private-keys-v1.d", GPGHOME_MODE)
    tree.mkdir("gpghome/openpgp-revocs.d", GPGHOME_MODE)
    grip = hashlib.sha1(b"keygrip", usedforsecurity=False).hexdigest().upper()
    fpr = hashlib.sha1(b"fingerprint", usedforsecurity=False).hexdigest().upper()
    tree.write(
        "gpghome/pubring.kbx", b"\x00\x00\x00\x20\x01\x01KBXf" + bytes(20), "gpg", SECRET_MODE
    )
    tree.write("gpghome/trustdb.gpg", b"\x01gpg\x03" + bytes(35), "gpg", SECRET_MODE)
    tree.write(f"gpghome/private-keys-v1.d/{grip}.key", b"Key: (private-key)\n", "gpg", SECRET_MODE)
    tree.write(
        f"gpghome/openpgp-revocs.d/{fpr}.rev",
        "This is a revocation certificate (placeholder)\n",
        "gpg",
        SECRET_MODE,
    )


def _tls_pair(tree: EtcTree, stem: str, cn: str) -> None:
    key, cert = _self_signed(cn)
    tree.write(f"ssl/{stem}.crt", cert.public_bytes(serialization.Encoding.PEM), "pem")
    tree.write(
        f"ssl/{stem}.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "pem",
        0o660,  # generate_certificate.sh: chmod -f 660 "${DIR}"/"${NAME}".*
    )


def _globalconf(tree: EtcTree, instance: str) -> bytes:
    _, ca = _self_signed(f"{instance} Test CA")
    ca_der = ca.public_bytes(serialization.Encoding.DER)
    tree.mkdir("globalconf")
    tree.write("globalconf/instance-identifier", instance, "text")
    tree.mkdir(f"globalconf/{instance}")
    for name, content, body in (
        ("private-params.xml", "PRIVATE-PARAMETERS", _private_params(instance)),
        ("shared-params.xml", "SHARED-PARAMETERS", _shared_params(instance, ca_der)),
    ):
        tree.write(f"globalconf/{instance}/{name}", body, "xml")
        tree.write(f"globalconf/{instance}/{name}.metadata", _metadata(content, instance), "json")
    return ca_der


def _root_properties(tree: EtcTree, text: str) -> None:
    """/etc/xroad.properties (database admin credentials; installation guide 2.6) lives beside
    /etc/xroad, not in it: written next to the tree only when the tree's root is named xroad."""
    if tree.root.name == "xroad":
        path = tree.root.parent / "xroad.properties"
        path.write_text(text)
        os.chmod(path, SECRET_MODE)
        tree.outside["xroad.properties"] = path


def build_xroad7_etc(
    root: Path,
    *,
    keys: Sequence[str] = ("AUTHENTICATION", "SIGNING", "SIGNING"),
    version: str = "7.8.0-1",
    node_type: str = "master",
    instance: str = INSTANCE,
) -> EtcTree:
    """/etc/xroad of an X-Road 7 security server after its packages installed and an admin
    configured it (user guide, installation guide, external load balancer guide).

    Learnt from (develop): conf.d/*.ini and *-logback.xml from src/packages/src/xroad/
    default-configuration and the ubuntu/generic/*.install lists that put them in conf.d or
    conf.d/addons (there is no addons ini for op-monitoring or metaservices: op-monitor.ini sits
    in conf.d; metaservices has none); services/*.conf from common/*/etc/xroad/services; jetty
    XML from common/proxy/etc/xroad/jetty; backup.d markers (empty, 0440) from the .install and
    postinst scripts; db.properties keys from base/usr/share/xroad/scripts/_setup_db.sh (crudini,
    "key = value") and the installation guide's Annex A; keyconf.xml from
    signer-core/src/main/resources/keyconf.xsd; softtoken/<keyId>.p12 from the signer's soft
    token; globalconf layout and .metadata JSON from globalconf-core test resources;
    variables-logback.properties from the Security Server Sidecar image (sidecar/files, 7.5+);
    the mapping file's format from the user guide 11.1.7. Modes from the postinst scripts.
    ``keys``: usage of each soft-token key (the first AUTHENTICATION key is the server's).
    """
    tree = EtcTree(root=root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, ETC_MODE)
    tree.write("VERSION", version + "\n", "text")

    # conf.d, package defaults
    tree.mkdir("conf.d")
    tree.mkdir("conf.d/addons")
    tree.write("conf.d/common.ini", COMMON_INI, "ini")
    tree.write("conf.d/proxy.ini", PROXY_INI, "ini")
    tree.write("conf.d/signer.ini", SIGNER_INI, "ini")
    tree.write("conf.d/proxy-ui-api.ini", PROXY_UI_API_INI, "ini")
    tree.write("conf.d/op-monitor.ini", OP_MONITOR_INI, "ini")
    tree.write("conf.d/override-securityserver-fi.ini", OVERRIDE_FI_INI, "ini")
    tree.write("conf.d/addons/message-log.ini", MESSAGE_LOG_INI, "ini")
    tree.write("conf.d/addons/monitor.ini", MONITOR_INI, "ini")
    tree.write("conf.d/node.ini", NODE_INI.format(node_type=node_type), "ini")
    tree.write("conf.d/local.ini", LOCAL_INI, "ini")
    for name in (
        "proxy-logback.xml",
        "signer-logback.xml",
        "signer-console-logback.xml",
        "confclient-logback.xml",
        "confclient-logback-service.xml",
        "proxy-ui-api-logback.xml",
        "proxy-ui-api-logback-access.xml",
        "op-monitor-logback.xml",
    ):
        log_name = name.removesuffix(".xml").replace("-logback", "")
        tree.write(f"conf.d/{name}", _logback(log_name, with_variables="confclient" in name), "xml")
    tree.write(
        "conf.d/addons/messagelog-archiver-logback.xml",
        _logback("messagelog-archiver", with_variables=True),
        "xml",
    )
    tree.write("conf.d/addons/monitor-logback.xml", _logback("monitor"), "xml")
    tree.write("conf.d/variables-logback.properties", VARIABLES_LOGBACK, "properties")
    tree.write("conf.d/acme.example.yml", ACME_EXAMPLE_YML, "yaml")
    tree.write("conf.d/mail.example.yml", MAIL_EXAMPLE_YML, "yaml")
    tree.write("conf.d/acme.yml", ACME_YML, "acme")
    tree.write("conf.d/mail.yml", MAIL_YML, "mail")

    # services: bash sourced by the launchers
    tree.mkdir("services")
    tree.write("services/global.conf", GLOBAL_CONF, "bash")
    for svc, var, jar, logback, heap in (
        ("proxy", "XROAD_PROXY_PARAMS", "proxy.jar", "proxy-logback.xml", "512m"),
        ("signer", "XROAD_SIGNER_PARAMS", "signer.jar", "signer-logback.xml", "100m"),
        ("confclient", "XROAD_CONFCLIENT_PARAMS", "configuration-client.jar",
         "confclient-logback.xml", "50m"),
        ("proxy-ui-api", "XROAD_PROXY_UI_API_PARAMS", "proxy-ui-api.jar",
         "proxy-ui-api-logback.xml", "512m"),
        ("opmonitor", "XROAD_OPMON_PARAMS", "op-monitor-daemon.jar", "op-monitor-logback.xml",
         "256m"),
        ("messagelog-archiver", "XROAD_MESSAGELOG_ARCHIVER_PARAMS", "messagelog-archiver.jar",
         "addons/messagelog-archiver-logback.xml", "200m"),
    ):  # fmt: skip
        tree.write(f"services/{svc}.conf", _service_conf(var, jar, logback, heap), "bash")
    tree.write("services/local.conf", LOCAL_CONF, "bash")
    tree.write("services/local.properties", LOCAL_PROPERTIES, "bash")

    # jetty
    tree.mkdir("jetty", JETTY_DIR_MODE)
    tree.write("jetty/clientproxy.xml", _jetty(20, 500), "xml")
    tree.write("jetty/serverproxy.xml", _jetty(20, 500), "xml")
    tree.write("jetty/ocsp-responder.xml", _jetty(2, 20), "xml")

    # signer: keyconf and the soft token
    # signing keys alternate between the owner and a second member the server hosts
    members = [(OWNER_CLASS, OWNER_CODE), ("GOV", "2286437-1")]
    soft = [make_soft_key(u, *members[i % 2]) for i, u in enumerate(keys)]
    tree.keys = soft
    tree.mkdir("signer")
    tree.write("signer/keyconf.xml", keyconf_xml(soft), "keyconf", KEYCONF_MODE)
    # xroad-signer.postinst: mkdir -m 0750 softtoken; the signer writes keys under the
    # services' umask 027 (0640): group xroad, through which xroad-slave reads the tree
    tree.mkdir("signer/softtoken", 0o750)
    for k in soft:
        tree.write(f"signer/softtoken/{k.key_id}.p12", k.p12, "pkcs12", FILE_MODE)
    pin_key, pin_cert = _self_signed("softtoken")
    tree.write(
        "signer/softtoken/.softtoken.p12",
        pkcs12.serialize_key_and_certificates(
            b"pin", pin_key, pin_cert, None, serialization.BestAvailableEncryption(SOFTTOKEN_PIN)
        ),
        "pkcs12",
        FILE_MODE,
    )
    tree.write("devices.ini", DEVICES_INI, "devices")

    tree.write("db.properties", DB_PROPERTIES_7, "properties")
    _root_properties(tree, ROOT_PROPERTIES)

    # global configuration and the anchor it was bootstrapped from
    _globalconf(tree, instance)
    _, anchor_cert = _self_signed(f"{instance} configuration signing")
    tree.write(
        "configuration-anchor.xml",
        _anchor_xml(instance, anchor_cert.public_bytes(serialization.Encoding.DER)),
        "xml",
    )

    # message log: archive encryption mapping and the body-encryption keystore (user guide 11.1)
    tree.mkdir("messagelog")
    tree.write("messagelog/archive-encryption-mapping.ini", ARCHIVE_MAPPING, "mapping")
    mk, mc = _self_signed("messagelog")
    tree.write(
        "messagelog/messagelog.p12",
        pkcs12.serialize_key_and_certificates(
            b"key1", mk, mc, None, serialization.BestAvailableEncryption(b"Kx7-keystore-pass")
        ),
        "pkcs12",
        FILE_MODE,  # group xroad reads it (the proxy runs as xroad); a 0600 one: see tests
    )

    # backup.d: one empty marker per package, 0440
    tree.mkdir("backup.d")
    for marker in ("00_xroad-confclient", "10_xroad-signer", "20_xroad-monitor",
                   "30_xroad-proxy", "40_xroad-opmonitor"):  # fmt: skip
        tree.write(f"backup.d/{marker}", b"", "empty", BACKUP_D_MODE)

    # ssl: internal TLS, admin UI, op-monitor client and the ACME account keystore
    tree.mkdir("ssl")
    _tls_pair(tree, "internal", "ss1.example.org")
    _tls_pair(tree, "proxy-ui-api", "ss1.example.org")
    _tls_pair(tree, "opmonitor", "opmonitor")
    ak, ac = _self_signed("acme account")
    tree.write(
        "ssl/acme.p12",
        pkcs12.serialize_key_and_certificates(
            b"account", ak, ac, None,
            serialization.BestAvailableEncryption(b"Ac9-generated-keystore-pw"),
        ),
        "pkcs12",
        FILE_MODE,  # written by proxy-ui-api as xroad under the services' umask 027
    )  # fmt: skip

    _gpghome(tree)
    return tree


# ----------------------------------------------------------------------------------------------
# X-Road 8 (develop-8.x)
# ----------------------------------------------------------------------------------------------

DB_PROPERTIES_8 = """\
xroad.db.serverconf.hibernate.jdbc.use_streams_for_binary = true
xroad.db.serverconf.hibernate.connection.driver_class = org.postgresql.Driver
xroad.db.serverconf.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/serverconf
xroad.db.serverconf.hibernate.hikari.dataSource.currentSchema = serverconf,public
xroad.db.serverconf.hibernate.connection.username = serverconf
xroad.db.serverconf.hibernate.connection.password = Pq4-serverconf-Gen
xroad.db.messagelog.hibernate.jdbc.use_streams_for_binary = true
xroad.db.messagelog.hibernate.connection.driver_class = org.postgresql.Driver
xroad.db.messagelog.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/messagelog
xroad.db.messagelog.hibernate.connection.username = messagelog
xroad.db.messagelog.hibernate.connection.password = Ml8-messagelog-Gen
xroad.db.op-monitor.hibernate.connection.url = jdbc:postgresql://127.0.0.1:5432/op-monitor
xroad.db.op-monitor.hibernate.connection.username = opmonitor
xroad.db.op-monitor.hibernate.connection.password = Om2-opmonitor-Gen
"""

LOCAL_YAML_8 = f"""\
# Node-local overrides, read by every service (Quarkus: quarkus.config.locations;
# admin service: spring.config.import).
xroad:
  common-global-conf:
    source: REMOTE
  proxy:
    connector-host: 10.40.0.15
    client-timeout: 30000
  proxy-ui-api:
    acme-challenge-port-enabled: true
  message-log:
    archive-grouping: member
    archive-encryption-enabled: true
  acme: |
    eab-credentials:
      certificate-authorities:
        'Test ACME CA':
          mac-key-base64-encoded: true
          members:
            '{INSTANCE}:{OWNER_CLASS}:{OWNER_CODE}':
              kid: kid-auth-01
              mac-key: c2VjcmV0LWF1dGgtbWFjLWtleS0wMQ==
    account-keystore-password: Ac9-generated-keystore-pw
  mail-notification: |
    host: smtp.example.org
    port: 587
    username: xroad-notify
    password: Nt3-smtp-pass
    contacts:
      '{INSTANCE}:{OWNER_CLASS}:{OWNER_CODE}': ops@example.org
"""


def _local_tls_yaml() -> str:
    """conf.d/local-tls.yaml as write_tls_config.sh (base/usr/share/xroad/scripts) fills it:
    xroad.<module>.tls.certificate-provisioning.{common-name, alt-names, ip-subject-alt-names},
    the lists comma-joined strings."""
    out = ["xroad:"]
    for module in ("proxy", "op-monitor", "proxy-ui-api"):
        out += [
            f"  {module}:",
            "    tls:",
            "      certificate-provisioning:",
            "        common-name: ss1.example.org",
            "        alt-names: ss1.example.org,ss1",
            "        ip-subject-alt-names: 10.40.0.15",
        ]
    return "\n".join(out) + "\n"


LOCAL_PROPERTIES_8 = """\
XROAD_PROXY_PARAMS=-Xms256m -Xmx2g
"""


def build_xroad8_etc(root: Path, *, version: str = "8.0.0-1", instance: str = INSTANCE) -> EtcTree:
    """The node-local part of an X-Road 8 security server's /etc/xroad: what stays on the node
    when configuration moved to the database and the secret store.

    Learnt from (develop-8.x): db.properties keys "xroad.db.<db>.hibernate..." from
    deployment/native-packages/.../scripts/_setup_db.sh (crudini, "key = value"); local.yaml's
    place from each service's application.yaml (quarkus.config.locations) and the admin
    service's application.yml (spring.config.import), its shape from
    development/ansible/roles/init-dev-configuration (xroad.<component>.<key>, acme and
    mail-notification as block scalars); local-tls.yaml from write_tls_config.sh;
    services/local.properties from base/etc/xroad/services/global.conf (XROAD_* lines only);
    globalconf as X-Road 7. Reader of db.properties in Quarkus: SmallRye's properties source
    (Properties.load of a UTF-8 reader).
    """
    tree = EtcTree(root=root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, ETC_MODE)
    tree.write("VERSION", version + "\n", "text")
    tree.write("db.properties", DB_PROPERTIES_8, "properties")
    tree.mkdir("conf.d")
    tree.write("conf.d/local.yaml", LOCAL_YAML_8, "yaml-smallrye")
    tree.write("conf.d/local-tls.yaml", _local_tls_yaml(), "yaml-smallrye")
    tree.mkdir("services")
    tree.write("services/local.properties", LOCAL_PROPERTIES_8, "bash")
    _globalconf(tree, instance)
    _gpghome(tree)
    return tree


# What the guides tell an operator to create or edit by hand: (file relative to /etc/xroad,
# guide, section). Guides in doc/Manuals: ug-ss = Security Server User Guide, ig-ss = its
# Installation Guide, ug-syspar = System Parameters, ig-xlb = External Load Balancer guide.
ADMIN_GUIDE_FILES: tuple[tuple[str, str, str], ...] = (
    ("conf.d/local.ini", "ug-syspar",
     "2.1 Changing the System Parameter Values in Configuration Files"),
    ("conf.d/local.ini", "ig-ss", "3.5 Configuring Configuration Backup Encryption"),
    ("conf.d/local.ini", "ug-ss", "11.1.3 Message Log Encryption"),
    ("messagelog/messagelog.p12", "ug-ss", "11.1.3 Message Log Encryption"),
    ("messagelog/archive-encryption-mapping.ini", "ug-ss",
     "11.1.7 Archive Encryption and Grouping"),
    ("gpghome/", "ug-ss", "11.1.7 Archive Encryption and Grouping"),
    ("devices.ini", "ig-ss", "2.10 Installing the Support for Hardware Tokens"),
    ("db.properties", "ug-ss", "11.3 Using a Remote Database"),
    ("db.properties", "ig-ss", "Annex D Create Database Structure Manually"),
    ("../xroad.properties", "ig-ss", "2.6 Remote Database Setup"),
    ("conf.d/node.ini", "ig-xlb", "3.2 Primary installation"),
    ("conf.d/node.ini", "ig-xlb", "3.3 Secondary installation"),
    ("services/local.properties", "ug-ss", "13 Back up and restore"),
    ("conf.d/mail.yml", "ug-ss", "24 Configuring ACME"),
    ("conf.d/acme.yml", "ug-ss", "24 Configuring ACME"),
)  # fmt: skip
