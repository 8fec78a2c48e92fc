"""Shared pytest configuration.

Fixtures live in their own modules (one per area) and are registered here.
"""

import signal

pytest_plugins: list[str] = ["fixtures_docker", "fixtures_redis", "fixtures_local"]

# A shell starts background jobs (`cmd &`, as some CI runners do) with SIGINT
# ignored, and an ignored signal stays ignored across exec: Python then installs
# no KeyboardInterrupt handler, in pytest or in any process a test starts, and
# every Ctrl-C test would fail for a reason outside pcq. Restore the default so
# those tests check pcq, wherever the suite is launched from.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
