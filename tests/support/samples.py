"""Bytes of a real security server's /etc/xroad, for the rule and validator tests.

Modelled on what X-Road itself writes and accepts (inline comments, quoted values, ';'
comments, a comment-only devices.ini, a namespaced keyconf.xml, a jetty config with a DOCTYPE),
because the validator must never reject a tree X-Road itself accepts. The tests build their own
content; nothing is copied from a real server.
"""

from __future__ import annotations

AUTH_KEY = "DF9242D3CBDE6DAC8058D2878340C3B527041FD0"
SIGN_KEY = "1342B84B4829BB79226AB268B4D8E70B01068613"
HSM_KEY = "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567"
DB_PASSWORD = "Zq7-db-Secret!pw"
KEYCONF_NS = "http://x-road.eu/xsd/xroad.xsd"  # keyconf.xsd's target namespace


def keyconf_doc(devices: str, root: str = f'ns3:keyConf xmlns:ns3="{KEYCONF_NS}"') -> bytes:
    """A small keyconf.xml around ``devices``; ``root``: the root's start tag, less the <>."""
    return f"<{root}>{devices}</{root.split(' ', 1)[0]}>".encode()


def softtoken_device(keys: str, device_type: str = "softToken") -> str:
    return f"<device><deviceType>{device_type}</deviceType><id>0</id>{keys}</device>"


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
