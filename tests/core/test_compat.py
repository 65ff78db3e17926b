"""The seed project's API (`switchboard.compat`) on the local provider."""

from __future__ import annotations

from typing import Any

import switchboard as sb
from switchboard import Call, Cloud, Context, Done, Response, Task
from switchboard.compat import app_from


def test_a_response_sent_twice_for_one_attempt_changes_nothing() -> None:
    """Tasks run at least once: a redelivered task sends its `Response` a second time with
    the same token. That must not fail the task (the first outcome stands)."""

    def twice(context: Context) -> int:
        context.success = True
        context.cache["sent"] = context.cache.get("sent", 0) + 1
        response = Response(Cloud.LOCAL, None, "twice", context)
        response.send()
        response.send()  # as a duplicate execution of this attempt would
        return 200

    def handler(context: Any) -> Any:
        Call("twice_task")
        return Done()

    app = app_from(handler, {"twice_task": Task(name="twice_task", execute=twice)}, name="twice")
    with sb.local(app) as client:
        status = client.wait(client.start("twice"), timeout=30)
    assert status.status == "completed"
    assert status.output == {"sent": 1}
