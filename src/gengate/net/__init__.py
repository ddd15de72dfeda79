"""Outbound networking rules shared by everything that calls a URL it was given.

`guard`: the SSRF guard (parse strictly, resolve once, check every address) used by callbacks,
input images and submit. `bounded`: reading an answer's body within a limit, used by the
callback sender, the relays, input images and the SDK. Both need only the standard library and
httpx, so the client-only `gengate-client` distribution ships this package too.
"""
