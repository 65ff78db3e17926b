"""The demo shop: every workflow feature in one order-fulfilment run.

switchboard run examples.shop.shop:app fulfil --input '{"order": {"id": "o-1", "total": 42}}'
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import switchboard as sb

app = sb.App("shop")


@app.task(retries=3, retry_delay=0.2)
def charge(order_id: str, amount: int) -> dict[str, Any]:
    """A payment call that sometimes fails on the first attempt; retries cover it."""
    task = sb.current_task()
    if task.attempt == 1 and random.random() < 0.5:
        raise ConnectionError("payment gateway timed out")
    return {"charged": amount, "receipt": f"r-{order_id}", "key": task.idempotency_key}


@app.task
def pack(order: dict[str, Any]) -> str:
    return f"parcel-{order['id']}"


@app.task
def notify(order: dict[str, Any]) -> str:
    return f"mail sent for {order['id']}"


@app.task
def request_approval(order: dict[str, Any]) -> Any:
    """Hand the task's token to an outside approver; it finishes the task later."""
    token = sb.current_task().token
    threading.Thread(target=_approver, args=(app.name, token), daemon=True).start()
    return sb.pending()


def _approver(app_name: str, token: str) -> None:
    from switchboard.runtime import active_runtime

    time.sleep(0.3)
    runtime = active_runtime(app_name)
    if runtime is not None:
        sb.Client(runtime).complete(token, {"approved_by": "risk-desk"})


@app.workflow
def fulfil(ctx: sb.Context, order: dict[str, Any]) -> dict[str, Any]:
    receipt = charge(order["id"], order["total"])
    label, mail = ctx.parallel(ctx.call(pack, order), ctx.call(notify, order))
    ctx.cache["charged"] = True
    if order.get("gift"):
        ctx.sleep(0.5)
    approval = request_approval(order)
    return {"receipt": receipt, "label": label, "mail": mail, "approval": approval}


@app.workflow
def fulfil_with_signal(ctx: sb.Context, order: dict[str, Any]) -> dict[str, Any]:
    """Like `fulfil`, but waits for an `approved` event sent with `client.signal`."""
    receipt = charge(order["id"], order["total"])
    approval = ctx.wait_for_event("approved", timeout=3600)
    return {"receipt": receipt, "approval": approval}
