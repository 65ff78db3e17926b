"""Unique ids for messages, versions and leases, cheap enough for the hot path.

They need to be unique, not secret: nothing is authorised by knowing one (task tokens are
HMAC-signed, see `switchboard.tokens`). `os.urandom` releases the GIL for its system
call, and under a busy GIL every such release costs the caller a wait to get it back
(measured: 44 us a call with 200 runs in flight, against under 1 us here). So ids come
from a per-process generator seeded from `os.urandom`, and reseeded in a forked child so
parent and child never share a sequence. Its calls hold the GIL, so threads share it
safely.
"""

from __future__ import annotations

import os
import random

_generator = random.Random()


def _reseed() -> None:
    _generator.seed(os.urandom(32))


_reseed()
os.register_at_fork(after_in_child=_reseed)


def random_bits(bits: int) -> int:
    """A uniformly random non-negative integer below 2**bits."""
    return _generator.getrandbits(bits)


def hex_id() -> str:
    """32 hex digits (128 random bits), as `uuid.uuid4().hex` gives but without its cost."""
    return f"{_generator.getrandbits(128):032x}"
