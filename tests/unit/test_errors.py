"""Tests for syncagent.errors: reason codes and exit codes."""

from __future__ import annotations

import errno
import os

import pytest

from syncagent.errors import Reason, exit_code_for, os_error


def test_exit_codes_follow_reasons() -> None:
    assert exit_code_for(Reason.CONFIG) == 2
    assert exit_code_for(Reason.VALIDATION) == 3
    assert exit_code_for(Reason.NOT_INITIALIZED) == 4
    assert exit_code_for(Reason.HOST_KEY) == 1
    assert exit_code_for(Reason.PAUSED) == 5
    assert exit_code_for(Reason.PERMISSION) == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_or_read_only_disk_is_disk_whoever_meets_it(code: int) -> None:
    e = os_error(OSError(code, os.strerror(code)), "rolling back to g1")
    assert e.reason is Reason.DISK
    assert e.message == f"rolling back to g1: {os.strerror(code)}"


def test_other_os_errors_take_the_callers_reason() -> None:
    broken = OSError(errno.EIO, "Input/output error")
    assert os_error(broken, "x").reason is Reason.APPLY
    assert os_error(broken, "x", Reason.CONFIG).reason is Reason.CONFIG


def test_a_denied_access_is_permission_and_names_the_file() -> None:
    denied = PermissionError(errno.EACCES, "Permission denied", "/s/current.json")
    e = os_error(denied, "sync", Reason.CONFIG)
    assert e.reason is Reason.PERMISSION
    assert e.message == "sync (/s/current.json): Permission denied"
