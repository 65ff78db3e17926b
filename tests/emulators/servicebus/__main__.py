"""Run the Service Bus test broker as a process:

    python -m tests.emulators.servicebus --host 127.0.0.1 --port 5672 \\
        [--max-delivery-count 10] [--lock-duration 60]

The two settings are the defaults for every queue. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from .broker import Broker
from .store import QueueSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.servicebus")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-delivery-count", type=int, default=QueueSettings.max_delivery_count)
    parser.add_argument(
        "--lock-duration", type=float, default=QueueSettings.lock_duration, help="seconds"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")

    broker = Broker(
        args.host,
        args.port,
        max_delivery_count=args.max_delivery_count,
        lock_duration=args.lock_duration,
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        broker.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"Service Bus test broker on {args.host}:{args.port}", flush=True)
    print(broker.connection_string, flush=True)
    broker.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
