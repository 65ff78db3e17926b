"""Signed task tokens: how an outside service proves it may finish a task.

A token names (app, run, step, attempt) and carries an HMAC-SHA256 of that over the app's
secret. `client.complete` refuses a forged token (`InvalidToken`) and, by writing a
marker record with `expect=ABSENT`, a token that was already used (`TokenAlreadyUsed`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from switchboard.errors import Conflict, InvalidToken, ProviderError
from switchboard.interfaces import ABSENT, StateStore
from switchboard.retry import retrying

_SECRETS_PARTITION = "switchboard"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    app: str
    run: str
    seq: int
    attempt: int
    task: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, claims: TokenClaims) -> str:
        payload = json.dumps(
            [claims.app, claims.run, claims.seq, claims.attempt, claims.task],
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def verify(self, token: str, app: str) -> TokenClaims:
        """The token's claims; `InvalidToken` if it was not signed with our secret."""
        try:
            payload_text, mac_text = token.split(".")
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except (ValueError, AttributeError):
            raise InvalidToken("malformed task token") from None
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise InvalidToken("task token signature does not match: forged or from another app")
        token_app, run, seq, attempt, task = json.loads(payload)
        if token_app != app:
            raise InvalidToken(f"task token belongs to app {token_app!r}, not {app!r}")
        return TokenClaims(token_app, run, int(seq), int(attempt), task)


def resolve_secret(app_name: str, configured: bytes | None, store: StateStore) -> bytes:
    """The app's signing secret: configured, from SWITCHBOARD_SECRET, or kept in the state
    store (created once, shared by every process using that store)."""
    if configured:
        return configured
    if os.environ.get("SWITCHBOARD_SECRET"):
        return os.environ["SWITCHBOARD_SECRET"].encode()
    key = f"secret.{app_name}"
    candidate = secrets.token_bytes(32)
    try:
        retrying(lambda: store.put(_SECRETS_PARTITION, key, candidate, expect=ABSENT))
        return candidate
    except Conflict:
        # Another process created it first, or our own write took effect before a
        # transient failure: either way the stored secret is the one to use.
        record = retrying(lambda: store.get(_SECRETS_PARTITION, key))
        if record is None:
            raise ProviderError(
                f"the signing secret {key!r} conflicted on create but cannot be read back"
            ) from None
        return record.value
