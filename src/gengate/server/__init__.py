"""The HTTP server of `gengate serve`: uvicorn, with the gateway's bounds on connections.

- :mod:`.limits`: how large and how slow a request head may be, how long an idle connection
  lives, how many connections one process keeps open;
- :mod:`.listen`: the listening socket, bound before anything else starts;
- :mod:`.replies`: the errors the server answers itself, in the gateway's envelope;
- :mod:`.protocol`: uvicorn's httptools protocol, enforcing the limits;
- :mod:`.tls`: HTTPS, its certificate and key checked before the server starts;
- :mod:`.run`: one process, or several sharing the socket under uvicorn's supervisor.
"""
