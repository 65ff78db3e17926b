"""A stand-in for the seed's "microservice": it finishes `another_task` later, from its
own thread, by sending the task's Response after some work."""

import threading
import time


def trigger(context, respond):
    def work():
        time.sleep(0.2)
        context.cache["report_mailed"] = True
        respond(context)

    threading.Thread(target=work, name="microservice", daemon=True).start()
