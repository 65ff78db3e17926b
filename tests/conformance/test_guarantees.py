"""Every guarantee sentence of the provider interfaces is checked, and quoted exactly."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from switchboard import interfaces
from switchboard_conformance import QueueConformance, StateStoreConformance
from switchboard_conformance import guarantees as g
from switchboard_conformance.guarantees import Guarantee, checked_by, checks, guarantee

SUITES = [QueueConformance, StateStoreConformance]
#: The Protocols the suites above cover (Executor joins with ExecutorConformance).
COVERED = [
    interfaces.Queue,
    interfaces.ClaimingQueue,
    interfaces.InterruptibleQueue,
    interfaces.Broker,
    interfaces.StateStore,
]


def _normal(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text[:1].lower() + text[1:]


def _clauses(doc: str) -> list[str]:
    """The clauses after "Guarantees:", split at sentence ends and semicolons."""
    text = " ".join(doc.split("Guarantees:", 1)[1].split())
    return [_normal(c) for c in re.split(r"(?<=\.)\s+|;\s+", text) if c.strip()]


def _checked() -> set[Guarantee]:
    return {
        promise
        for suite in SUITES
        for name in dir(suite)
        if name.startswith("test_")
        for promise in checked_by(getattr(suite, name))
    }


def _declared() -> list[Guarantee]:
    return [value for value in vars(g).values() if isinstance(value, Guarantee)]


def test_every_guarantee_sentence_is_checked_by_a_test() -> None:
    checked = {_normal(promise.text) for promise in _checked()}
    unchecked = []
    for protocol in COVERED:
        for name, member in vars(protocol).items():
            doc = inspect.getdoc(member) if callable(member) else None
            if doc and "Guarantees:" in doc:
                unchecked += [
                    f"{protocol.__name__}.{name}: {clause}"
                    for clause in _clauses(doc)
                    if clause not in checked
                ]
    assert not unchecked, "\n".join(unchecked)


def test_every_guarantee_quotes_the_interfaces_module() -> None:
    source = Path(interfaces.__file__).read_text(encoding="utf-8").replace("#:", " ")
    source = " ".join(source.split()).lower()
    misquoted = [str(p) for p in _declared() if _normal(p.text).lower() not in source]
    assert not misquoted, "\n".join(misquoted)


def test_every_declared_guarantee_is_checked() -> None:
    unused = [str(promise) for promise in _declared() if promise not in _checked()]
    assert not unused, "\n".join(unused)


def test_every_test_names_the_guarantees_it_checks() -> None:
    unnamed = [
        f"{suite.__name__}.{name}"
        for suite in SUITES
        for name in dir(suite)
        if name.startswith("test_") and not checked_by(getattr(suite, name))
    ]
    assert not unnamed, unnamed


def test_any_failure_of_a_checked_test_names_its_guarantee() -> None:
    @checks(g.ACK)
    def provider_raises() -> None:
        raise KeyError("handle")

    @checks(g.ACK)
    def bare_assert() -> None:
        raise AssertionError("something else")

    @checks(g.ACK)
    def named_assert() -> None:
        raise AssertionError(guarantee(g.ACK, "redelivered"))

    for test in (provider_raises, bare_assert, named_assert):
        with pytest.raises(AssertionError, match=r"guarantee broken: Queue\.ack: An acked"):
            test()
    with pytest.raises(AssertionError) as failure:
        provider_raises()
    assert "the provider raised builtins.KeyError: 'handle'" in str(failure.value)


def test_skips_pass_through_checks_untouched() -> None:
    @checks(g.TTL)
    def skipped() -> None:
        pytest.skip("capability not declared: ttl")

    with pytest.raises(pytest.skip.Exception, match="capability not declared: ttl"):
        skipped()
