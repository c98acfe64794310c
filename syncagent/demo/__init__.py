"""``syncagent demo`` and what it needs: an embedded primary and a realistic X-Road tree.

Kept out of the core package on purpose: nothing the agent itself runs imports from here.
The tests and the benchmarks build their primaries with ``demo.sample_tree`` too.
"""

from syncagent.demo.session import run_demo

__all__ = ["run_demo"]
