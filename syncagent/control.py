"""Daemon control commands (pause, resume, sync-now, status, rollback, run)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .settings import Settings

COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {}
