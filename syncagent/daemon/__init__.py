"""``syncagent run``: scheduling, the kept connection, probes, metrics, control, watchers."""
