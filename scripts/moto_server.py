"""moto's server with DynamoDB's writes made atomic, a Query's start key held to its key
condition as DynamoDB holds it, and SQS FIFO receives one at a time.

DynamoDB applies each conditional write atomically: of two concurrent conditional
updates of one item, one wins and the other's condition fails. moto's server handles
requests on threads and does not serialize its DynamoDB backend, so two concurrent
conditional writes can both succeed there. Herald's claim on a delivery relies on that
atomicity, so the tests run moto with the backend's item operations, and the handling of
each write request from its first read to its answer, under one lock.

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
from decimal import Decimal

from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
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

# The answers too: moto's handler reads an item's old attributes before the backend's
# write and turns the written item into its answer after it, outside that lock, so two
# concurrent `ADD n :one` could both answer the second's count (ReturnValues
# UPDATED_NEW) and an ALL_OLD could show another write's result. DynamoDB answers each
# write with the item as that write left it: the whole request is serialized here.
for _name in (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
):
    setattr(DynamoHandler, _name, _serialized(getattr(DynamoHandler, _name)))

# DynamoDB refuses a Query whose ExclusiveStartKey falls outside its key condition ("The
# provided starting key is outside query boundaries based on provided condition", a
# ValidationException, as DynamoDB Local answers too); moto starts from it all the same.
_query = DynamoDBBackend.query


def _plain(value):
    (kind, text), = value.items()
    return Decimal(text) if kind == "N" else text


def _within(comparison, value, bounds):
    if comparison == "BETWEEN":
        return bounds[0] <= value <= bounds[1]
    if comparison == "BEGINS_WITH":
        return value.startswith(bounds[0])
    return {
        "=": value == bounds[0],
        "<": value < bounds[0],
        "<=": value <= bounds[0],
        ">": value > bounds[0],
        ">=": value >= bounds[0],
    }.get(comparison, True)


def _query_from_a_start_key_within_bounds(
    self, table_name, hash_key, range_comparison, range_values, limit, start, *args, **kwargs
):
    if start and kwargs.get("index_name") is None:
        table = self.get_table(table_name)
        outside = hash_key is not None and start.get(table.hash_key_attr) != hash_key
        start_range = start.get(table.range_key_attr) if table.range_key_attr else None
        if not outside and range_comparison and start_range is not None:
            outside = not _within(
                range_comparison,
                _plain(start_range),
                [_plain(bound) for bound in range_values],
            )
        if outside:
            raise MockValidationException(
                "The provided starting key is outside query boundaries based on provided condition"
            )
    return _query(
        self, table_name, hash_key, range_comparison, range_values, limit, start, *args, **kwargs
    )


DynamoDBBackend.query = _query_from_a_start_key_within_bounds

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
