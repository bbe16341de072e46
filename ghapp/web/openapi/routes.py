"""Route helpers the description and the app share (nothing of the description loads here)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route


def has_route(routes: list[BaseRoute], path: str, method: str = "GET") -> bool:
    """Whether an app's routes serve `method path` (a route template, as in the spec)."""
    return any(
        isinstance(route, Route) and route.path == path and method in (route.methods or ())
        for route in routes
    )
