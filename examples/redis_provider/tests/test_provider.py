"""The provider as Switchboard finds it: through the `switchboard` entry point, with typed
settings read from arguments or the environment."""

from __future__ import annotations

import uuid

import pytest
from switchboard_redis import RedisConfig

import switchboard as sb
from switchboard.errors import ConfigError
from switchboard.plugins import registry


def test_the_entry_point_registers_the_redis_provider() -> None:
    installed = registry.all()["redis"]
    assert installed.package == "switchboard-redis"
    assert installed.components == ["queue", "state"]
    assert installed.sdk_installed


def test_settings_come_from_arguments_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHBOARD_REDIS_URL", raising=False)
    monkeypatch.delenv("SWITCHBOARD_REDIS_PREFIX", raising=False)
    assert registry.config("redis", {}) == RedisConfig("redis://127.0.0.1:6379/0", "switchboard")
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:1/2")
    assert registry.config("redis", {}).url == "redis://127.0.0.1:1/2"
    assert registry.config("redis", {"url": "redis://127.0.0.1:3/4"}).url == "redis://127.0.0.1:3/4"
    with pytest.raises(ConfigError, match="did you mean 'url'"):
        registry.config("redis", {"uri": "redis://127.0.0.1"})


def test_a_workflow_runs_on_redis_through_connect(redis_url: str) -> None:
    app = sb.App("redis-connect")

    @app.task
    def double(x: int) -> int:
        return 2 * x

    @app.workflow
    def twice(ctx: sb.Context, x: int) -> int:
        return double(double(x))

    with sb.connect(
        app, "redis", workers=2, url=redis_url, prefix=f"sbconnect-{uuid.uuid4().hex[:12]}"
    ) as client:
        run_id = client.start("twice", x=5)
        assert client.wait(run_id, timeout=30).output == 20
