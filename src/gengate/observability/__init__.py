"""Seeing what the gateway does: one log format for every line (:mod:`.logs`), one line and
the observers' hooks per HTTP request (:mod:`.requests`), and the request's notes that put a
key id, trace id and task id on every line logged while it is answered (:mod:`.context`)."""
