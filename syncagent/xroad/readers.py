"""Which X-Road program reads each file of /etc/xroad, with what, and so which rule checks it.

A rule is chosen by the reader, not by the suffix: ``messagelog/archive-encryption-mapping.ini``
ends in ``.ini`` but the message log reads it line by line, and an INI rule refused every tree
that had one. A file no X-Road reader parses gets the safe-name checks only (names.py): a
validator that refuses what nobody reads protects nothing and stops good syncs.

The first class whose pattern matches wins; patterns follow the rsync rules of excludes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from syncagent.excludes import Pattern, compile_pattern, matches
from syncagent.xroad.formats import (
    Rule,
    validate_devices,
    validate_ini,
    validate_json,
    validate_key_mapping,
    validate_keyconf,
    validate_properties,
    validate_xml,
    validate_yaml,
    validate_yaml_xroad7,
    validate_yaml_xroad8,
)

COMMONS_INI = "Apache commons-configuration2 INIConfiguration (DisabledListDelimiterHandler)"
COMMONS_INI_LISTS = "Apache commons-configuration2 INIConfiguration (values split on ',')"
PROPERTIES = "java.util.Properties.load"
SNAKEYAML = "SnakeYAML (YAML 1.1, safe constructors)"
XML = "a JDK XML parser"


@dataclass(frozen=True)
class Reader:
    """One class of paths and the X-Road reader that reads them."""

    pattern: str
    program: str
    library: str
    rule: Rule | None  # None: checked otherwise (bash -n) or not at all


READERS: tuple[Reader, ...] = (
    Reader(
        "/messagelog/archive-encryption-mapping.ini",
        "xroad-proxy's message log archiver (user guide: archive encryption)",
        "its own line reader: UTF-8 lines, `identifier = keyId`, split on an unescaped `=`",
        validate_key_mapping,
    ),
    Reader(
        "/conf.d/*.ini", "every X-Road service (SystemPropertiesLoader)", COMMONS_INI, validate_ini
    ),
    Reader(
        "/conf.d/addons/*.ini",
        "every X-Road service (addon configuration)",
        COMMONS_INI,
        validate_ini,
    ),
    Reader(
        "/devices.ini",
        "xroad-signer (ModuleConf: PKCS#11 module configuration)",
        COMMONS_INI_LISTS,
        validate_devices,
    ),
    Reader(
        "/services/*.conf",
        "the service launchers (bash `source`)",
        "bash (checked with bash -n)",
        None,
    ),
    Reader(
        "/services/*.properties",
        "the service launchers (global.conf reads local.properties line by line for XROAD_* "
        "variables)",
        "bash `while IFS='=' read -r key value`: any line reads",
        None,
    ),
    Reader(
        "/conf.d/*.properties",
        "logback's variables (variables-logback.properties)",
        PROPERTIES,
        validate_properties,
    ),
    Reader(
        "/*.properties",
        "X-Road services (db.properties: the serverconf database)",
        PROPERTIES,
        validate_properties,
    ),
    Reader(
        "/conf.d/*.example.yml",
        "nobody (the packages' commented examples for acme.yml and mail.yml)",
        "none",
        None,
    ),
    Reader(
        "/conf.d/acme.yml",
        "X-Road 7's ACME settings (common-acme AcmeCommonConfig): loadAs, one document",
        SNAKEYAML,
        validate_yaml_xroad7,
    ),
    Reader(
        "/conf.d/mail.yml",
        "X-Road 7's mail notifications (common-mail MailConfig): loadAs, one document",
        SNAKEYAML,
        validate_yaml_xroad7,
    ),
    Reader(
        "/conf.d/*.yml",
        "xroad-proxy-ui-api (Spring Boot) in 7.x; the services' config in 8.x",
        SNAKEYAML,
        validate_yaml,
    ),
    Reader(
        "/conf.d/*.yaml",
        "X-Road 8 services (local.yaml, local-tls.yaml: SmallRye in the Quarkus services, "
        "Spring Boot in the admin service)",
        SNAKEYAML,
        validate_yaml_xroad8,
    ),
    Reader(
        "/signer/keyconf.xml",
        "xroad-signer and xroad-proxy (key configuration)",
        "JAXB unmarshalling (TokenConf): no schema validation in X-Road 7.0-7.8",
        validate_keyconf,
    ),
    Reader("/conf.d/*.xml", "logback, in every X-Road service", XML, validate_xml),
    Reader("/jetty/*.xml", "Jetty's XmlConfiguration in xroad-proxy", XML, validate_xml),
    Reader("/configuration-anchor.xml", "xroad-confclient", XML, validate_xml),
    Reader(
        "/globalconf/**.metadata",
        "xroad-confclient (a downloaded file's metadata)",
        "a JSON decoder",
        validate_json,
    ),
    Reader(
        "/globalconf/**.xml",
        "xroad-confclient and every service (global configuration)",
        XML,
        validate_xml,
    ),
)


@cache
def _compiled() -> tuple[tuple[Pattern, Reader], ...]:
    return tuple((compile_pattern(r.pattern), r) for r in READERS)


def reader_for(rel: str) -> Reader | None:
    """The reader of a tree path; None: no X-Road reader parses it (safe-name checks only)."""
    for pattern, reader in _compiled():
        if matches(pattern, rel, is_dir=False):
            return reader
    return None


def rule_for(rel: str) -> Rule | None:
    reader = reader_for(rel)
    return reader.rule if reader else None
