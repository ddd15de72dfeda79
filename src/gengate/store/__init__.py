"""The database behind one interface (:class:`gengate.store.base.Store`)."""
