"""The operator page at `/`: its routes (`page`), sign-in and sessions, rendering, the
releases section and its charts, and the Jinja2 templates (`templates/`)."""
