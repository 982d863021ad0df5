"""The sandbox web page at ``/``: server-rendered HTML (plain ``string.Template``), no build step."""

from adapter.web.routes import web_router

__all__ = ["web_router"]
