"""Passwords from files (Docker secrets) and the CA file, read once into RedisSettings."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.connection import SSLConnection

from pcq.core.errors import UsageProblem
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings

SECRET = "s3cret/with@odd:chars"


def settings_for(tmp_path: Path, url: str = "redis://consumer@redis:6379/0",
                 **env: str) -> RedisSettings:
    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    return RedisSettings.from_env({"REDIS_URL": url, "PCQ_REDIS_PASSWORD_FILE": str(secret), **env})


def test_password_comes_from_the_file_and_is_never_shown(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    assert (s.username, s.password, s.where) == ("consumer", SECRET, "redis:6379")
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert "password_file=" in repr(s)
    client = connect(s)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("consumer", SECRET)
    finally:
        client.close()


def test_secret_url_carries_password_and_ca_for_url_only_libraries(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x", encoding="utf-8")
    s = settings_for(tmp_path, "rediss://rq@redis:6379/0", PCQ_REDIS_CA_FILE=str(ca))
    url = s.secret_url()
    assert url.startswith("rediss://rq:s3cret%2Fwith%40odd%3Achars@redis:6379/0?ssl_ca_certs=")
    import redis

    client = redis.Redis.from_url(url)
    try:
        pool = client.connection_pool
        assert pool.connection_kwargs["password"] == SECRET
        assert pool.connection_kwargs["ssl_ca_certs"] == str(ca)
        assert pool.connection_class is SSLConnection
    finally:
        client.close()
    tls = connect(s)
    try:
        assert tls.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    finally:
        tls.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("", "empty"), ("\n\n", "empty"), ("x" * 5000, "over 4096 bytes")],
)
def test_unusable_password_file_is_one_line(tmp_path: Path, content: str | None,
                                            message: str) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageProblem, match=message) as info:
        RedisSettings.from_env({"PCQ_REDIS_PASSWORD_FILE": str(path)})
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_password_given_twice_or_ca_without_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageProblem, match="give it once") as info:
        settings_for(tmp_path, "redis://consumer:other@redis:6379/0")
    assert "other" not in str(info.value)
    with pytest.raises(UsageProblem, match="needs a rediss:// URL"):
        settings_for(tmp_path, PCQ_REDIS_CA_FILE="/ca.crt")
