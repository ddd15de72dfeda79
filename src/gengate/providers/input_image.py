"""A client's input image: inline as a data URL, or fetched from an http(s) URL it names.

The gateway fetches such a URL itself, from inside the operator's network, so the callback rules
apply (:mod:`gengate.net.guard`): the host is resolved once and every address checked, the
connection goes to the checked address, no redirect is followed, no proxy is used. The body is
read by the bounded reader (`gengate.net.bounded`) and refused once its decoded bytes pass a
size limit (a gzip-encoded body is inflated no further), and the picture's size is checked before
it is decoded, so neither a huge file nor a decompression bomb can exhaust memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io

import httpx
from PIL import Image, UnidentifiedImageError

from gengate.net.bounded import ACCEPT_ENCODING, BadEncoding, BodyTooLarge, aread_capped
from gengate.net.guard import AddressPolicy, UnsafeUrl, resolve_and_check
from gengate.providers.base import ProviderFailure

USER_AGENT = "gengate-fetch/1"
DEFAULT_MAX_BYTES = 20 << 20
#: More pixels than any model here takes (8192 x 8192); the image is resized down anyway.
DEFAULT_MAX_PIXELS = 1 << 26


def _invalid(message: str) -> ProviderFailure:
    return ProviderFailure("INVALID_INPUT", message)


async def read_image_url(
    url: str,
    policy: AddressPolicy,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = 30.0,
) -> bytes:
    """The bytes `url` names: decoded from a `data:` URL, or fetched through the SSRF guard.

    Raises `INVALID_INPUT` for anything the client can fix: a refused or unreachable host, an
    answer other than 200, a body over `max_bytes`.
    """
    if url.startswith("data:"):
        return _decode_data_url(url, max_bytes)
    try:
        target = await resolve_and_check(url, policy)
    except UnsafeUrl as exc:
        # The guard words its reasons for callbacks; the client here sent an image URL.
        raise _invalid(str(exc).replace("callback_url", "image_url")) from None
    headers = {"host": target.host_header(), "user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING}
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout_s) as client,
            client.stream(
                "GET", target.ip_url(), headers=headers, extensions={"sni_hostname": target.host}
            ) as response,
        ):
            if response.status_code != 200:
                raise _invalid(f"image_url answered HTTP {response.status_code}; it must answer 200.")
            return await aread_capped(response, max_bytes)
    except BodyTooLarge:
        raise _too_large(max_bytes) from None
    except BadEncoding as exc:
        raise _invalid(f"image_url could not be decoded: {exc}.") from None
    except TimeoutError:
        raise _invalid(f"image_url was not read within {timeout_s:g} s.") from None
    except httpx.HTTPError as exc:
        raise _invalid(f"image_url could not be read: {type(exc).__name__}.") from None


def _too_large(max_bytes: int) -> ProviderFailure:
    return _invalid(f"The image is larger than {max_bytes} bytes.")


def _decode_data_url(url: str, max_bytes: int) -> bytes:
    _header, comma, payload = url.partition(",")
    if not comma:
        raise _invalid("image_url is a data URL without data.")
    if len(payload) > (max_bytes + 2) // 3 * 4:
        raise _too_large(max_bytes)
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise _invalid("image_url is a data URL whose data is not valid base64.") from None


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`data` as an RGB picture; `INVALID_INPUT` when it is not one or has too many pixels."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise _invalid(
                f"The image has {image.width}x{image.height} pixels; at most {max_pixels} are taken."
            )
        return image.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise _invalid(f"image_url does not hold an image Pillow can read: {exc}") from None
