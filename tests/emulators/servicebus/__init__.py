"""Our AMQP 1.0 Service Bus test broker: azure-servicebus talks to it as to the service.

`start_broker()` runs it in a thread of the test process, `start_broker_process()` as a
child process; see `server.py`.
"""

from .broker import Broker, connection_string
from .server import start_broker, start_broker_process

__all__ = ["Broker", "connection_string", "start_broker", "start_broker_process"]
