"""The validation gate against X-Road's own readers: the agent accepts a file iff the reader loads
it, and for INI and properties derives the same entries.

Three sources of inputs, each read by the real reader in one batched call (tests/support/
readers.py: one JVM per 400 files): every file of the realistic X-Road 7 and 8 trees, every
shape pinned in test_readers.py, and thousands of texts generated from a grammar of lines plus
byte-level mutations of the realistic files (tests/oracle/generate.py, fixed seeds;
SYNCAGENT_DIFF_SEED=<n> explores other ones). The only accepted disagreement is the agent
refusing what the reader loads in one of the deliberately stricter cases of STRICTER, each
documented in the rule's docstring and in docs/readers.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from support.readers import (
    Harness,
    Reading,
    YamlFlavour,
    read_devices,
    read_ini,
    read_keyconf,
    read_properties,
    read_yaml,
)
from support.xroad_etc import EtcTree, build_xroad7_etc, build_xroad8_etc

from oracle.generate import batch, ini_text, keyconf_text, properties_text, yaml_text
from oracle.test_readers import (
    DEVICES_CASES,
    INI_CASES,
    KEYCONF_CASES,
    PROPERTIES_CASES,
    YAML_CASES,
)
from syncagent.xroad.formats import (
    IniError,
    PropertiesError,
    _yaml_problem,
    parse_ini,
    parse_properties,
    validate_devices,
    validate_keyconf,
)
from syncagent.xroad.paths import KEYCONF_PATH, softtoken_key_ids
from syncagent.xroad.readers import rule_for

# The deliberately stricter refusals: the agent refuses, the reader loads something other than
# what the operator wrote. Keyed by a fragment of the agent's message.
STRICTER: dict[str, str] = {
    "malformed [section] header": "a line opening '[' that is not '[name]' ('[proxy', "
    "'[b] ; note', '[proxy] x') is read as a key of the previous section: every setting "
    "below it lands in the wrong section",
    "byte order mark": "a UTF-8 BOM turns the first '[section]' into a global key, so its "
    "settings land in the global section",
    "lookup refused": "a ${prefix:...} lookup other than env: and sys: reads files on the "
    "secondary (file, properties, xml, resourceBundle), loads classes (const) or computes at "
    "start-up what the agent cannot check; X-Road's configuration uses none",
    "empty [section] name": "'[]' stops the service as soon as it holds a key (null value); "
    "without keys it only re-reads the other sections under odd names",
}
# devices.ini only: the signer logs these and carries on without the module (or the keys)
MODULE_SKIPPED: dict[str, str] = {
    "the signer skips this module": "a boolean parameter that does not convert: the HSM "
    "module silently disappears",
    "the signer ignores it": "keys outside any section or in a blank-named one belong to no "
    "module and are ignored",
}
# Shapes of test_readers.py the agent refuses on purpose, with the STRICTER reason that applies.
STRICTER_SHAPES: dict[str, str] = {
    "ini:unclosed_section": "malformed [section] header",
    "ini:section_comment": "malformed [section] header",
    "ini:bom": "byte order mark",
}


def _seed(default: int) -> int:
    return int(os.environ.get("SYNCAGENT_DIFF_SEED", default))


def _write(directory: Path, suffix: str, inputs: Sequence[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(inputs):
        path = directory / f"{i:05d}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What a side made of one input: loaded with these entries, or refused (why)."""

    ok: bool
    entries: list[tuple[str | None, str, str]] | None = None
    why: str = ""


def agent_ini(data: bytes, list_delimiter: str | None = None) -> Verdict:
    try:
        entries = parse_ini(data, list_delimiter=list_delimiter)
    except IniError as exc:
        return Verdict(False, why=str(exc))
    return Verdict(True, [(e.section or None, e.key, e.value) for e in entries])


def agent_devices(data: bytes) -> Verdict:
    """parse_ini as the signer reads devices.ini, refused where validate_devices refuses."""
    problem = validate_devices("devices.ini", data)
    return agent_ini(data, ",") if problem is None else Verdict(False, why=problem.message)


def oracle_ini(reading: Reading, *, devices: bool = False) -> Verdict:
    if not reading.ok:
        return Verdict(False, why=f"{reading.exception}: {reading.consequence}")
    # ModuleConf reads a key without value (key(1) naming no node) as absent
    entries = [
        (e.section, e.key, e.value) for e in reading.entries if e.value is not None or not devices
    ]
    return Verdict(True, entries)  # type: ignore[arg-type]


def agent_properties(data: bytes) -> Verdict:
    try:
        pairs = parse_properties(data)
    except PropertiesError as exc:
        return Verdict(False, why=str(exc))
    return Verdict(True, [("", k, v) for k, v in pairs])


def oracle_properties(reading: Reading) -> Verdict:
    if not reading.ok:
        return Verdict(False, why=f"{reading.exception}")
    return Verdict(True, [(e.section, e.key, e.value) for e in reading.entries])  # type: ignore[misc]


def stricter_reason(agent: Verdict) -> str | None:
    return next((k for k in STRICTER if k in agent.why), None) if not agent.ok else None


def disagreement(agent: Verdict, oracle: Verdict) -> str | None:
    """None when the two agree (or the agent is stricter on purpose), else what differs."""
    if agent.ok and oracle.ok:
        return None if agent.entries == oracle.entries else "entries differ"
    if not agent.ok and not oracle.ok:
        return None
    if agent.ok:
        return f"agent accepts, reader fails ({oracle.why})"
    if stricter_reason(agent):
        return None
    return f"agent refuses ({agent.why}), reader loads"


def devices_disagreement(agent: Verdict, reading: Reading) -> str | None:
    """As disagreement, plus: the agent refuses exactly the files the signer reads but logs
    a module (or keys) as skipped (MODULE_SKIPPED)."""
    skipping = not agent.ok and any(m in agent.why for m in MODULE_SKIPPED)
    if reading.ok and reading.logged:  # refused for this or any other reason: agreed
        return None if not agent.ok else f"signer skips ({reading.logged}), agent accepts"
    if skipping:
        return "agent refuses a module the signer reads"
    return disagreement(agent, oracle_ini(reading, devices=True))


def _report(rows: list[tuple[bytes, str, Verdict, Verdict]]) -> str:
    lines = [f"{len(rows)} disagreements; the first ones:"]
    for data, what, agent, oracle in sorted(rows, key=lambda r: len(r[0]))[:8]:
        lines += [f"  {data!r}", f"    {what}", f"    agent  {agent}", f"    oracle {oracle}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- trees


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> list[EtcTree]:
    return [
        build_xroad7_etc(tmp_path_factory.mktemp("x7") / "etc" / "xroad"),
        build_xroad8_etc(tmp_path_factory.mktemp("x8") / "etc" / "xroad"),
    ]


def _rel(tree: EtcTree, path: Path) -> str:
    return str(path.relative_to(tree.root))


def test_every_realistic_ini_and_properties_file_derives_the_same_entries(
    oracle: Harness, trees: list[EtcTree]
) -> None:
    checked = 0
    for kind, read, agent in (
        ("ini", read_ini, agent_ini),
        ("devices", read_devices, agent_devices),
        ("properties", read_properties, agent_properties),
    ):
        files = [(t, p) for t in trees for p in t.by_reader(kind)]
        for (tree, path), reading in zip(files, read([p for _, p in files]), strict=True):
            data = path.read_bytes()
            rule = rule_for(_rel(tree, path))
            assert rule is not None and rule(_rel(tree, path), data) is None, path
            mine = agent(data)
            theirs = (
                oracle_properties(reading)
                if kind == "properties"
                else oracle_ini(reading, devices=kind == "devices")
            )
            assert mine.ok and theirs.ok, (path, mine.why, theirs.why)
            assert mine.entries == theirs.entries, path
            checked += 1
    assert checked >= 14


def test_every_realistic_yaml_file_is_accepted_and_loads_in_its_readers(
    oracle: Harness, trees: list[EtcTree]
) -> None:
    modes = {"acme": ("acme", "yaml"), "mail": ("mail", "yaml")}
    modes["yaml-smallrye"] = ("yaml-smallrye", "yaml-spring")
    files = [(t, p, kind) for t in trees for kind in modes for p in t.by_reader(kind)]
    all_modes: tuple[YamlFlavour, ...] = ("acme", "mail", "yaml", "yaml-smallrye", "yaml-spring")
    for mode in all_modes:
        paths = [p for _, p, kind in files if mode in modes[kind]]
        assert paths and all(r.ok for r in read_yaml(paths, mode)), mode
    for tree, path, _ in files:
        rule = rule_for(_rel(tree, path))
        assert rule is not None and rule(_rel(tree, path), path.read_bytes()) is None, path
    examples = [(t, p) for t in trees for p in t.by_reader("yaml")]
    assert examples and all(rule_for(_rel(t, p)) is None for t, p in examples)  # nobody reads
    assert len(files) >= 4


def test_files_the_launchers_read_get_no_java_rule(trees: list[EtcTree]) -> None:
    """services/*.conf are sourced (bash -n checks them), services/local.properties is read by
    global.conf's ``while IFS='=' read`` loop: java.util.Properties' rule (a malformed \\u
    refused) would refuse JVM options X-Road starts with."""
    files = [(t, p) for t in trees for p in t.by_reader("bash")]
    assert any(p.name == "local.properties" for _, p in files)
    assert all(rule_for(_rel(t, p)) is None for t, p in files)


# --------------------------------------------------------------------------------- shapes


def test_every_ini_shape_of_the_reader_tests(oracle: Harness, tmp_path: Path) -> None:
    names = list(INI_CASES)
    readings = read_ini(_write(tmp_path, ".ini", [INI_CASES[n] for n in names]))
    for name, reading in zip(names, readings, strict=True):
        mine, theirs = agent_ini(INI_CASES[name]), oracle_ini(reading)
        stricter = STRICTER_SHAPES.get(f"ini:{name}")
        if stricter:
            assert not mine.ok and stricter in mine.why and theirs.ok, name
        else:
            assert disagreement(mine, theirs) is None, (name, mine, theirs)
            assert mine.ok == theirs.ok, name  # no stricter refusal hides in the shapes


def test_ini_file_lookup_is_refused_and_never_read(oracle: Harness, tmp_path: Path) -> None:
    """${file:...} reads a file on the secondary when X-Road starts: the agent neither reads
    it nor can tell whether it will exist there, so it refuses (STRICTER)."""
    secret = tmp_path / "content.txt"
    secret.write_text("from another file\n")
    data = f"[s]\nk = ${{file:UTF-8:{secret}}}\n".encode()
    (reading,) = read_ini(_write(tmp_path, ".ini", [data]))
    assert reading.ok and reading.value("s", "k") == "from another file\n"
    mine = agent_ini(data)
    assert not mine.ok and stricter_reason(mine) == "lookup refused"
    assert "from another file" not in mine.why


def test_every_devices_and_properties_shape_of_the_reader_tests(
    oracle: Harness, tmp_path: Path
) -> None:
    names = list(DEVICES_CASES)
    readings = read_devices(_write(tmp_path, ".ini", [DEVICES_CASES[n] for n in names]))
    for name, reading in zip(names, readings, strict=True):
        mine = agent_devices(DEVICES_CASES[name])
        assert devices_disagreement(mine, reading) is None, (name, mine, reading)
        assert mine.ok == (reading.ok and not reading.logged), name
    names = list(PROPERTIES_CASES)
    paths = _write(tmp_path, ".properties", [PROPERTIES_CASES[n] for n in names])
    for name, reading, utf8 in zip(
        names, read_properties(paths), read_properties(paths, utf8=True), strict=True
    ):
        mine, theirs = agent_properties(PROPERTIES_CASES[name]), oracle_properties(reading)
        assert mine.ok == theirs.ok == utf8.ok and mine.entries == theirs.entries, name


YamlCheck = Callable[[bytes], str | None]
# path class -> (the agent's check, the oracle flavours that must all load)
YAML_CLASSES: dict[str, tuple[YamlCheck, tuple[str, ...]]] = {
    "conf.d/acme.yml": (lambda d: _yaml_problem(d, single_document=True), ("yaml",)),
    "conf.d/local.yaml": (
        lambda d: _yaml_problem(d, unique_keys=True),
        ("yaml-smallrye", "yaml-spring"),
    ),
    "conf.d/other.yml": (lambda d: _yaml_problem(d, numbers_as_strings=True), ("yaml-smallrye",)),
}


def _yaml_disagreements(
    inputs: Sequence[bytes], directory: Path
) -> list[tuple[bytes, str, Verdict, Verdict]]:
    paths = _write(directory, ".yml", inputs)
    flavours = {f for _, fs in YAML_CLASSES.values() for f in fs}
    readings = {f: read_yaml(paths, f) for f in flavours}  # type: ignore[arg-type]
    rows = []
    for i, data in enumerate(inputs):
        for path_class, (check, needed) in YAML_CLASSES.items():
            why = check(data)
            loads = all(readings[f][i].ok for f in needed)
            if (why is None) != loads:
                failed = next((readings[f][i] for f in needed if not readings[f][i].ok), None)
                oracle = Verdict(loads, why=f"{failed.exception}" if failed else "")
                rows.append((data, path_class, Verdict(why is None, why=why or ""), oracle))
    return rows


def test_every_yaml_shape_of_the_reader_tests(oracle: Harness, tmp_path: Path) -> None:
    rows = _yaml_disagreements(list(YAML_CASES.values()), tmp_path)
    assert rows == [], _report(rows)


def test_yaml_path_classes_use_these_checks() -> None:
    """The checks differentiated above are the ones readers.py gives those paths."""
    assert rule_for("conf.d/acme.yml") is rule_for("conf.d/mail.yml")
    sample = b"a: 1\n---\nb: 2\n"
    for path, (check, _) in YAML_CLASSES.items():
        rule = rule_for(path)
        assert rule is not None
        assert (rule(path, sample) is None) == (check(sample) is None), path
    dup = b"a: 1\na: 2\n"
    assert rule_for("conf.d/local.yaml")("conf.d/local.yaml", dup) is not None  # type: ignore[misc]


# --------------------------------------------------------------------------------- generated


def _realistic(trees: list[EtcTree], *kinds: str) -> list[bytes]:
    return [p.read_bytes() for t in trees for k in kinds for p in t.by_reader(k)]


def test_generated_ini_agrees_with_commons_configuration(
    oracle: Harness, trees: list[EtcTree], tmp_path: Path
) -> None:
    """2000 INI texts (grammar and mutations of realistic files) through SystemPropertiesLoader's
    reader, 600 through the signer's devices.ini reader."""
    seeds = _realistic(trees, "ini", "devices") + list(INI_CASES.values())
    inputs = batch(_seed(20261207), 2000, ini_text, seeds)
    devices = batch(_seed(20261207) + 1, 600, ini_text, seeds)
    rows = []
    verdicts: dict[str, int] = {}
    for data, reading in zip(inputs, read_ini(_write(tmp_path, ".ini", inputs)), strict=True):
        mine, theirs = agent_ini(data), oracle_ini(reading)
        kind = "ok" if mine.ok else stricter_reason(mine) or "refused"
        verdicts[kind] = verdicts.get(kind, 0) + 1
        what = disagreement(mine, theirs)
        if what:
            rows.append((data, what, mine, theirs))
    dev_dir = tmp_path / "devices"
    dev_dir.mkdir()
    skipped = 0
    for data, reading in zip(devices, read_devices(_write(dev_dir, ".ini", devices)), strict=True):
        mine = agent_devices(data)
        skipped += bool(reading.ok and reading.logged)
        what = devices_disagreement(mine, reading)
        if what:
            rows.append((data, f"devices: {what}", mine, oracle_ini(reading, devices=True)))
    assert rows == [], _report(rows)
    # the grammar keeps exercising every verdict, loading most inputs
    assert verdicts["ok"] > 1000 and verdicts["refused"] > 50, verdicts
    assert all(verdicts.get(k, 0) > 0 for k in STRICTER), verdicts
    assert skipped > 20


def test_generated_properties_agree_with_java_util_properties(
    oracle: Harness, trees: list[EtcTree], tmp_path: Path
) -> None:
    """1500 properties texts, read as X-Road 7 (ISO-8859-1) and X-Road 8 (UTF-8) read them."""
    seeds = _realistic(trees, "properties") + list(PROPERTIES_CASES.values())
    inputs = batch(_seed(20261208), 1500, properties_text, seeds)
    paths = _write(tmp_path, ".properties", inputs)
    rows = []
    loaded = 0
    for data, reading, utf8 in zip(
        inputs, read_properties(paths), read_properties(paths, utf8=True), strict=True
    ):
        mine, theirs = agent_properties(data), oracle_properties(reading)
        loaded += mine.ok
        what = disagreement(mine, theirs) or (None if utf8.ok == mine.ok else "UTF-8 reader")
        if what:
            rows.append((data, what, mine, theirs))
    assert rows == [], _report(rows)
    assert loaded > 750


def test_generated_yaml_agrees_with_snakeyaml(
    oracle: Harness, trees: list[EtcTree], tmp_path: Path
) -> None:
    """1000 YAML texts through X-Road 7's, SmallRye's and Spring Boot's SnakeYAML set-ups."""
    seeds = _realistic(trees, "acme", "mail", "yaml", "yaml-smallrye")
    inputs = batch(_seed(20261209), 1000, yaml_text, seeds)
    rows = _yaml_disagreements(inputs, tmp_path)
    assert rows == [], _report(rows)


# --------------------------------------------------------------------------------- keyconf.xml

# The agent refuses every DTD internal subset and entity in XML (entity expansion would be a
# billion-laughs attack on every service reading the file; X-Road's writers emit none); JAXB
# expands internal entities and loads the file.
XML_STRICTER = ("DTD internal subset refused", "entity declaration refused")


def keyconf_disagreement(data: bytes, reading: Reading) -> str | None:
    """The agent accepts keyconf.xml iff the signer's unmarshaller loads it, and finds the
    same softToken keyIds (the signer's, less empty ones and repeats: no .p12 to name)."""
    problem = validate_keyconf(KEYCONF_PATH, data)
    if problem is not None:
        if not reading.ok or any(s in problem.message for s in XML_STRICTER):
            return None
        return f"agent refuses ({problem.message}), the signer loads it"
    if not reading.ok:
        return f"agent accepts, the signer fails: {reading.error}"
    theirs = list(dict.fromkeys(i for i in cast(list[str | None], reading.data) if i))
    mine = softtoken_key_ids(data)
    return None if mine == theirs else f"keyIds {mine} vs the signer's {theirs}"


def _keyconf_report(rows: list[tuple[bytes, str]]) -> str:
    return "\n".join(f"{what}\n  {data[:300]!r}" for data, what in rows[:15])


def test_every_realistic_and_pinned_keyconf_agrees_with_the_signer(
    oracle: Harness, trees: list[EtcTree], tmp_path: Path
) -> None:
    realistic = [p for t in trees for p in t.by_reader("keyconf")]
    assert realistic
    for path, reading in zip(realistic, read_keyconf(realistic), strict=True):
        assert reading.ok and reading.data, path
        assert keyconf_disagreement(path.read_bytes(), reading) is None, path
    pinned = list(KEYCONF_CASES.values())
    rows = [
        (data, what)
        for data, reading in zip(
            pinned, read_keyconf(_write(tmp_path, ".xml", pinned)), strict=True
        )
        if (what := keyconf_disagreement(data, reading))
    ]
    assert rows == [], _keyconf_report(rows)


def test_generated_keyconf_agrees_with_the_signers_jaxb(
    oracle: Harness, trees: list[EtcTree], tmp_path: Path
) -> None:
    """800 keyconf.xml texts (a grammar of the signer's shapes and byte mutations of the
    realistic one) through JAXB as the signer unmarshals them."""
    seeds = _realistic(trees, "keyconf")
    inputs = batch(_seed(20261210), 800, keyconf_text, seeds)
    rows = []
    loaded = with_keys = 0
    for data, reading in zip(inputs, read_keyconf(_write(tmp_path, ".xml", inputs)), strict=True):
        loaded += reading.ok
        with_keys += bool(reading.ok and any(cast(list[str | None], reading.data)))
        if what := keyconf_disagreement(data, reading):
            rows.append((data, what))
    assert rows == [], _keyconf_report(rows)
    assert loaded > 300 and len(inputs) - loaded > 100 and with_keys > 100, (loaded, with_keys)
