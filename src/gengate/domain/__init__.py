"""The task model: states, errors, ids and the model catalogue. Knows nothing of HTTP or SQL."""
