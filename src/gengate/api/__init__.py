"""The ASGI app: one module per wire dialect, shared auth, errors and body handling."""
