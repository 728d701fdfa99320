"""moto's server with DynamoDB's writes made atomic.

DynamoDB applies each conditional write atomically: of two concurrent conditional
updates of one item, one wins and the other's condition fails. moto's server handles
requests on threads and does not serialize its DynamoDB backend, so two concurrent
conditional writes can both succeed there. Herald's claim on a delivery relies on that
atomicity, so the tests run moto with the backend's item operations under one lock.
"""

import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

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

if __name__ == "__main__":
    sys.exit(main())
