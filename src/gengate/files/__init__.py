"""Result storage behind one interface, and the signed, expiring URLs that serve it."""
