"""The web console at `/console`: server-rendered pages (Jinja2 and htmx, every asset packaged)
for a key's owner (playground, tasks, usage, webhooks) and the operator (keys, models, health).

It talks to the same services as the API: a task submitted here is submitted by
`TaskService.submit`, with the same checks, limits and credits.
"""

from gengate.console.routes import console_routes

__all__ = ["console_routes"]
