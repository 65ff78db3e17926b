"""The Quickstart demo: run the shop's workflows on the embedded local provider.

Shows a retried task, a parallel pair, the run cache, a durable sleep, a task finished
by an outside service through its token, and a workflow waiting for a signal.
"""

from __future__ import annotations

import json
import sys
import time

import switchboard as sb
from examples.shop.shop import app


def main() -> int:
    with sb.local(app) as client:
        run_id = client.start("fulfil", order={"id": "o-1", "total": 42, "gift": True})
        print(f"fulfil run {run_id} started")
        status = client.wait(run_id, timeout=30)
        for event in client.history(run_id):
            if event.type in ("step.scheduled", "step.failed", "step.pending", "step.completed"):
                data = event.data
                print(f"  {event.type:15} step {data['seq']} {data.get('name', '')}")
        print(json.dumps(status.output, indent=2))

        run_id = client.start("fulfil_with_signal", order={"id": "o-2", "total": 7})
        while client.status(run_id).status != "waiting":
            time.sleep(0.05)
        print(f"run {run_id} is waiting for 'approved'; sending it")
        client.signal(run_id, "approved", {"by": "demo"})
        print(json.dumps(client.wait(run_id, timeout=30).output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
