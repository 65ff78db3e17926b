"""Finished runs expire through DynamoDB's TTL attribute (`App(retention=...)`).

DynamoDB deletes expired items in the background (moto never does); until then the store
treats an item past `expires` as absent, which is what the engine and the client see.
"""

from __future__ import annotations

import time
import uuid

import switchboard as sb
from switchboard.providers.aws.config import AwsConfig


def test_a_finished_run_expires_on_dynamodb(aws_config: AwsConfig, state_table: AwsConfig) -> None:
    app = sb.App("expiring" + uuid.uuid4().hex[:6], retention=2.0)

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context) -> int:
        return add(add(1))

    settings = {
        "endpoint_url": aws_config.endpoint_url,
        "region": aws_config.region,
        "prefix": aws_config.prefix,
        "table": state_table.table,
    }
    with sb.connect(app, "aws", workers=2, **settings) as client:
        run_id = client.start("run")
        assert client.wait(run_id, timeout=60).output == 3
        store = client.runtime.store
        items = store._client.query(  # type: ignore[attr-defined]
            TableName=state_table.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": run_id}},
        )["Items"]
        assert items and all("expires" in item for item in items), items
        assert client.status(run_id).status == "completed"
        time.sleep(2.2)
        assert store.scan(run_id).records == []
        assert run_id not in [r.run_id for r in client.list()]
