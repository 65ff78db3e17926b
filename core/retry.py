"""`retrying`: the one way the core retries provider operations that failed transiently."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from switchboard.errors import TransientProviderError

T = TypeVar("T")


def retrying(operation: Callable[[], T], *, attempts: int = 8, first_delay: float = 0.05) -> T:
    """Run a provider operation, retrying `TransientProviderError` with capped backoff.

    A transient failure may come after the operation took effect, so `operation` must be
    safe to repeat: callers of a conditional write treat the `Conflict` of a repeat as
    (possibly) their own earlier success.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except TransientProviderError:
            if attempt == attempts:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
