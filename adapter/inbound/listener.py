"""Glue between the MLLP transport and the pipeline: each frame is processed off the event loop
(the pipeline is synchronous and commits before returning), in order per connection."""

from __future__ import annotations

import asyncio

from adapter.pipeline import Pipeline

__all__ = ["PipelineHandler"]


class PipelineHandler:
    """An ``adapter.inbound.mllp.Handler`` backed by the pipeline.

    A StoreError propagates: the MLLP server then closes the connection without an ACK, so the
    sender resends once the store is back (nothing was archived, nothing is lost).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def handle(self, message: bytes) -> bytes | None:
        processed = await asyncio.to_thread(self.pipeline.process, message, channel="mllp")
        return processed.ack

    async def oversize(self, head: bytes, size: int) -> bytes | None:
        processed = await asyncio.to_thread(self.pipeline.ack_for_oversize, head, size)
        return processed.ack
