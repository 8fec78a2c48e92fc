"""Shared pytest configuration.

Fixtures live in their own modules (one per area) and are registered here.
"""

pytest_plugins: list[str] = ["fixtures_docker", "fixtures_redis", "fixtures_local"]
