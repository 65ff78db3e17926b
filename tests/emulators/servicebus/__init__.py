"""Our AMQP 1.0 Service Bus test broker (azure-servicebus talks to it as to the service)."""

from .broker import Broker

__all__ = ["Broker"]
