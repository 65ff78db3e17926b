"""Whether this folder ran against real AWS: shown as a skip (with `pytest -ra`) when it did
not, so a run on moto never passes for a live one."""

from __future__ import annotations

import pytest

from switchboard.providers.aws.config import AwsConfig
from tests.providers.aws.conftest import LIVE


@pytest.mark.skipif(
    not LIVE,
    reason="real AWS not targeted (moto's server was): set SWITCHBOARD_AWS_LIVE=1 and AWS "
    "credentials (and AWS_REGION) to run this folder against real SQS, DynamoDB and Lambda",
)
def test_the_suite_targets_real_aws(aws_config: AwsConfig) -> None:
    assert aws_config.endpoint_url is None, "AWS_ENDPOINT_URL points elsewhere"
