"""The seed project's README example on the aws provider, run by two `switchboard worker
--provider aws` processes against moto's server (see tests/seed_workers.py)."""

from __future__ import annotations

import os

import pytest

from switchboard.providers.aws.config import AwsConfig
from tests.seed_workers import run_seed_on_workers


def test_seed_example_runs_on_switchboard_workers(
    aws_config: AwsConfig, state_table: AwsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prefix, table and region by the provider's environment variables, the endpoint by
    # `--set`; moto's fake credentials are already in this process's environment.
    env = {name: value for name, value in os.environ.items() if name != "AWS_ENDPOINT_URL"}
    env.update(
        AWS_REGION=aws_config.region,
        SWITCHBOARD_AWS_PREFIX=aws_config.prefix,
        SWITCHBOARD_AWS_TABLE=state_table.table,
    )
    settings = {
        "region": aws_config.region,
        "prefix": aws_config.prefix,
        "table": state_table.table,
        "endpoint_url": aws_config.endpoint_url,
    }
    endpoint = ["--set", f"endpoint_url={aws_config.endpoint_url}"]
    run_seed_on_workers(
        "aws",
        monkeypatch,
        env=env,
        settings={name: value for name, value in settings.items() if value},
        worker_args=endpoint if aws_config.endpoint_url else [],
    )
