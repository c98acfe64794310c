"""syncagent: configuration sync for X-Road Security Server secondaries."""

__version__ = "0.1.0"
