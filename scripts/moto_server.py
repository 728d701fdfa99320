"""moto's server with DynamoDB's writes made atomic, and SQS FIFO receives one at a time.

DynamoDB applies each conditional write atomically: of two concurrent conditional
updates of one item, one wins and the other's condition fails. moto's server handles
requests on threads and does not serialize its DynamoDB backend, so two concurrent
conditional writes can both succeed there. Herald's claim on a delivery relies on that
atomicity, so the tests run moto with the backend's item operations under one lock.

SQS hands out no message of a FIFO queue's message group while another of its messages
is in flight. moto checks that against the groups in flight when a receive begins, and
during a long poll it keeps that first look; two receives at once (or one that began
before the other took a message) can each take a message of the same group, out of
order. So a receive on a FIFO queue here is a series of short looks, each under one
lock: every look sees the groups in flight as they are.
"""

import sys
import threading
import time

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main
from moto.sqs.models import SQSBackend

_LOCK = threading.RLock()


def _serialized(operation):
    def run(*args, **kwargs):
        with _LOCK:
            return operation(*args, **kwargs)

    run.__name__ = operation.__name__
    return run


for _name in (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "transact_write_items",
    "batch_write_item",
):
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

_FIFO_LOCK = threading.Lock()
_receive = SQSBackend.receive_message


def _receive_message(
    self,
    queue_name,
    count,
    wait_seconds_timeout,
    visibility_timeout,
    message_attribute_names=None,
):
    if not self.get_queue(queue_name).fifo_queue:
        return _receive(
            self,
            queue_name,
            count,
            wait_seconds_timeout,
            visibility_timeout,
            message_attribute_names,
        )
    deadline = time.time() + int(wait_seconds_timeout or 0)
    while True:
        with _FIFO_LOCK:
            result = _receive(
                self, queue_name, count, 0, visibility_timeout, message_attribute_names
            )
        if result or time.time() >= deadline:
            return result
        # Another look a fifth of a second on, or as soon as a message arrives: as often
        # as moto's own long poll looks, five times over, and never a busy loop.
        queue = self.get_queue(queue_name)
        if queue.messages:
            # Visible, but held back behind a message of their group in flight.
            time.sleep(0.2)
        else:
            queue.wait_for_messages(0.2)


SQSBackend.receive_message = _receive_message

if __name__ == "__main__":
    sys.exit(main())
