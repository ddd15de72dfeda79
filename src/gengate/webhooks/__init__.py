"""Callbacks: the outbox sender, Standard Webhooks signatures, and the SSRF guard."""
