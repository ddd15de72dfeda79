"""Callbacks: the outbox sender and Standard Webhooks signatures (the URL guard is :mod:`gengate.net`,
the retry schedule :mod:`gengate.domain.callback_schedule`)."""
