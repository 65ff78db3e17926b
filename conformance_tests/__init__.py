"""The Switchboard conformance suite: the provider contract's guarantees as pytest tests.

A provider author subclasses the suite's classes and supplies fixtures::

    from switchboard_conformance import QueueConformance, StateStoreConformance

    class TestMyQueue(QueueConformance):
        @pytest.fixture
        def broker(self):
            yield MyBroker(...)

or runs it against an installed provider with
`pytest -p switchboard_conformance.plugin --sb-provider NAME` (`switchboard conformance NAME`).
"""

import pkgutil

import pytest

# Before the suite's modules are imported, or failures show a bare AssertionError. The
# package itself is already being imported (registering its name would only earn a warning);
# its submodules, which hold the assertions, are not yet.
pytest.register_assert_rewrite(
    *(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__))
)

from switchboard_conformance.faults import FaultConformance, Faults  # noqa: E402
from switchboard_conformance.fixtures import ConformanceTiming  # noqa: E402
from switchboard_conformance.guarantees import Guarantee, checks, guarantee  # noqa: E402
from switchboard_conformance.queue import QueueConformance  # noqa: E402
from switchboard_conformance.state import StateStoreConformance  # noqa: E402
from switchboard_conformance.workflow import (  # noqa: E402
    ExecutorChoice,
    ExecutorConformance,
    WorkflowConformance,
)

__all__ = [
    "ConformanceTiming",
    "ExecutorChoice",
    "ExecutorConformance",
    "FaultConformance",
    "Faults",
    "Guarantee",
    "QueueConformance",
    "StateStoreConformance",
    "WorkflowConformance",
    "checks",
    "guarantee",
]
