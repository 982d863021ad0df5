"""The API's routers, and the dependencies they share.

A router that needs the store declares ``store: StoreDep``; ``create_app`` puts it on ``app.state.store``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from adapter.store.base import Store

__all__ = ["StoreDep", "get_store"]


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(get_store)]
