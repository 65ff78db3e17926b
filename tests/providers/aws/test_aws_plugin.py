"""The aws provider's registration: the hook, the entry point, the factories, and a clear
error when boto3 is missing."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import uuid

import pluggy
import pytest

import switchboard.hookspecs
import switchboard.providers.aws
from switchboard.config import build_config
from switchboard.interfaces import ProviderSpec
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.queue import SqsBroker
from switchboard.providers.aws.state import DynamoStateStore


def aws_spec() -> ProviderSpec:
    manager = pluggy.PluginManager(switchboard.hookspecs.PROJECT)
    manager.add_hookspecs(switchboard.hookspecs)
    manager.register(switchboard.providers.aws)
    manager.check_pending()  # a misspelled hook name fails here
    (specs,) = manager.hook.switchboard_providers()
    (spec,) = specs
    assert isinstance(spec, ProviderSpec)
    return spec


def test_the_hook_registers_the_aws_provider() -> None:
    spec = aws_spec()
    assert (spec.name, spec.config, spec.extra, spec.requires) == (
        "aws",
        AwsConfig,
        "aws",
        ("boto3",),
    )
    assert spec.broker is not None and spec.state is not None
    assert set(spec.executors) == {"lambda"}


def test_the_entry_point_names_the_module() -> None:
    points = {p.name: p.value for p in importlib.metadata.entry_points(group="switchboard")}
    assert points.get("aws") == "switchboard.providers.aws"


def test_settings_come_from_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("SWITCHBOARD_AWS_CREATE", "false")
    config = build_config(AwsConfig, {"prefix": "shop"}, provider="aws")
    assert (config.region, config.prefix, config.table, config.create) == (
        "eu-west-3",
        "shop",
        "switchboard-state",
        False,
    )


def test_factories_build_working_components(aws_settings: dict[str, str]) -> None:
    spec = aws_spec()
    assert spec.broker is not None and spec.state is not None
    unique = uuid.uuid4().hex[:8]
    config = build_config(
        AwsConfig,
        {**aws_settings, "prefix": f"sbp{unique}", "table": f"sbp-state-{unique}"},
        provider="aws",
    )
    broker = spec.broker(config)
    store = spec.state(config)  # creates the table
    assert isinstance(broker, SqsBroker) and isinstance(store, DynamoStateStore)
    try:
        queue = broker.queue("invocations")
        queue.send([b"hello"])
        assert [d.body for d in queue.receive(1, wait=2)] == [b"hello"]
        version = store.put("run-1", "meta", b"{}")
        record = store.get("run-1", "meta")
        assert record is not None and record.version == version
    finally:
        sqs = broker._client
        for url in sqs.list_queues(QueueNamePrefix=config.prefix).get("QueueUrls", []):
            sqs.delete_queue(QueueUrl=url)
        store._client.delete_table(TableName=config.table)
        broker.close()
        store.close()


def test_without_boto3_the_module_imports_and_factories_name_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["boto3"] = None  # as if boto3 were not installed
        sys.modules["botocore"] = None
        import switchboard.providers.aws as aws
        from switchboard.errors import ConfigError
        from switchboard.providers.aws.config import AwsConfig
        (spec,) = aws.switchboard_providers()
        for factory in (spec.broker, spec.state):
            try:
                factory(AwsConfig())
            except ConfigError as exc:
                print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    expected = "the aws provider needs boto3: pip install 'switchboard-orchestrator[aws]'"
    assert result.stdout.splitlines() == [expected, expected]
