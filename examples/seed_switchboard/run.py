"""Run the seed project's example on Switchboard's embedded local provider.

python examples/seed_switchboard/run.py [--db runs.db]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from main import workflow_handler
from tasks import directory_map

import switchboard as sb
from switchboard.compat import app_from

app = app_from(workflow_handler, directory_map, name="my_first_workflow")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="SQLite file for durable runs (default: in memory)")
    args = parser.parse_args()
    with sb.local(app, path=args.db) as client:
        run_id = client.start("my_first_workflow")
        status = client.wait(run_id, timeout=60)
        print(f"run {run_id}: {status.status}, cache {status.output}")
        for event in client.history(run_id):
            if event.type in ("step.scheduled", "step.completed"):
                print(f"  {event.type:15} step {event.data['seq']} {event.data.get('name', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
