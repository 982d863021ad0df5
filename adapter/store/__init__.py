"""Where resources and the inbound archive live: the ``Store`` interface, its SQLite implementation, and
FHIR search over it.

    from adapter.store import SqliteStore
    store = SqliteStore(".carethread/carethread.db")
"""

from adapter.store.base import InboundMessage, SearchResult, Store, StoredResource, Transaction
from adapter.store.query import SearchParamError
from adapter.store.sqlite import SqliteStore

__all__ = [
    "InboundMessage",
    "SearchParamError",
    "SearchResult",
    "SqliteStore",
    "Store",
    "StoredResource",
    "Transaction",
]
