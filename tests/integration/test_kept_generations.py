"""Kept generations are immutable: nothing done to the live tree reaches them.

Issue: "What people do by hand cannot break the agent". Kept generations were hardlinks of the
live files, so ``echo x >> conf.d/local.ini`` (or any editor writing in place) changed the
stored copy too; drift repair fixed the live file, the stored one stayed wrong, and
``syncagent rollback`` then refused it with exit 1 where the README documents ``validation`` as
exit 3. Real sshd, real syncs, the real CLI as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from support.config import cli_env, settings_for
from support.sshd import Sshd
from support.tools import run_syncagent
from support.trees import age, managed

from syncagent import engine
from syncagent.demo.sample_tree import add_softtoken_key
from syncagent.local.livetree import sha256_file
from syncagent.local.state import StateDir
from syncagent.report import Outcome
from syncagent.settings import Settings
from syncagent.tree import Kind


def _edit_in_place(target: Path) -> None:
    """What people do by hand: append, ``sed -i`` (a rename), and a write through r+."""
    subprocess.run(["sh", "-c", f"echo x >> {target / 'conf.d/local.ini'}"], check=True)
    subprocess.run(["sed", "-i", "s/^/#/", str(target / "devices.ini")], check=True)
    with (target / "signer/keyconf.xml").open("r+b") as f:
        f.write(b"<!-- by hand -->")


def _rollback(settings: Settings, gen: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, **cli_env(settings)}
    res = run_syncagent("rollback", gen, "--json", env=env)
    docs = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    return res.returncode, next(d for d in reversed(docs) if "event" not in d)


def _kept_matches_manifest(state: StateDir, gen: str) -> bool:
    manifest = state.generation_manifest(gen)
    assert manifest is not None
    root = state.generation_dir(gen)
    files = [p for p, r in manifest.records.items() if r.kind is Kind.FILE]
    return all(sha256_file(root / p) == manifest.records[p].sha256 for p in files)


async def _sync(settings: Settings, want: Outcome = Outcome.APPLIED) -> str:
    result = await engine.sync(settings)
    assert result.outcome is want, result.summary()
    assert result.generation is not None
    return result.generation


async def test_in_place_edits_never_reach_a_kept_generation_and_rollback_restores_each(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = settings_for(sshd, primary_tree, target)
    state = StateDir(settings.sync.state_dir)
    gens: list[tuple[str, dict[str, tuple[object, ...]]]] = []
    for change in range(3):
        if change:
            add_softtoken_key(primary_tree)
            age(primary_tree)
        gens.append((await _sync(settings), managed(target, settings)))
    (gen_c, tree_c) = gens[-1]

    _edit_in_place(target)
    assert managed(target, settings) != tree_c
    assert await _sync(settings) == gen_c, "drift repaired by a sync"
    assert managed(target, settings) == tree_c
    for gen, _ in gens:
        assert _kept_matches_manifest(state, gen), f"an edit reached kept generation {gen}"

    for gen, tree in [*gens[:2], gens[0], gens[2]]:
        _edit_in_place(target)  # each time on what the last rollback put live
        code, doc = _rollback(settings, gen)
        assert code == 0, doc
        assert doc["generation"] == gen
        assert managed(target, settings) == tree, f"rollback to {gen}: not its recorded bytes"
        for other, _ in gens:
            assert _kept_matches_manifest(state, other)


async def test_a_kept_generation_damaged_in_the_state_dir_is_refused_as_validation(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = settings_for(sshd, primary_tree, target)
    state = StateDir(settings.sync.state_dir)
    first = await _sync(settings)
    add_softtoken_key(primary_tree)
    age(primary_tree)
    await _sync(settings)
    live = managed(target, settings)

    with (state.generation_dir(first) / "conf.d/local.ini").open("ab") as f:
        f.write(b"# edited in the state dir\n")
    code, doc = _rollback(settings, first)
    assert code == 3, doc  # README: validation is exit 3
    assert doc["reason"] == "validation"
    assert doc["problems"][0]["path"] == "conf.d/local.ini"
    assert managed(target, settings) == live
    assert not state.pause_flag.exists(), "a refused rollback unpauses"


async def test_a_store_kept_before_copies_were_immutable_is_unshared(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    """An upgraded agent finds kept files that are the live files' inodes: a new generation
    copies such a file instead of linking it, and a rollback gives the store its own copy."""
    settings = settings_for(sshd, primary_tree, target)
    state = StateDir(settings.sync.state_dir)
    first = await _sync(settings)
    live_ini = target / "conf.d/local.ini"
    kept_ini = state.generation_dir(first) / "conf.d/local.ini"
    kept_ini.unlink()
    os.link(live_ini, kept_ini)  # what the agent kept before this change

    add_softtoken_key(primary_tree)
    age(primary_tree)
    second = await _sync(settings)
    new_ini = state.generation_dir(second) / "conf.d/local.ini"
    assert os.stat(new_ini).st_ino != os.stat(live_ini).st_ino

    code, doc = _rollback(settings, first)
    assert code == 0, doc
    assert os.stat(kept_ini).st_ino != os.stat(live_ini).st_ino
    _edit_in_place(target)
    assert _kept_matches_manifest(state, first) and _kept_matches_manifest(state, second)
