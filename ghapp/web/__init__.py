"""The Starlette app and its routes."""
