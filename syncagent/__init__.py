"""syncagent: configuration sync for X-Road Security Server secondaries."""

from syncagent.logs import capture_warnings

__version__ = "0.1.0"

capture_warnings()  # before any module imports a dependency that warns on import
