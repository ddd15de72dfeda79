"""What every console page shares: templates, security headers, the session guard and CSRF.

A page handler is `async (request, viewer) -> Response`; `Pages.guard` wraps it so that it runs
only for a signed-in viewer of the right kind (a key's owner, or the admin), and, for a POST,
only with the session's CSRF token (a form field or, from htmx, the `X-CSRF-Token` header).
A `GatewayError` from a service becomes an HTML page with the same status.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gengate.api.context import ApiContext
from gengate.api.routing import RouteGroup
from gengate.console import views
from gengate.console.sessions import COOKIE, SessionService, Viewer
from gengate.domain.errors import GatewayError

log = logging.getLogger(__name__)

Handler = Callable[[Request, Viewer], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: Forms are small; anything bigger is not a console form.
MAX_FORM_BYTES = 256 * 1024


def csp(media_origins: Iterable[str] = ()) -> str:
    """The Content-Security-Policy of console pages: this origin only, no inline code. Result
    files kept on another origin (S3) are admitted as images and media, by their origin only."""
    extra = " ".join(sorted(set(media_origins)))
    media = f"'self' {extra}".strip()
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {media} data:; media-src {media}; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Pages:
    """The templates and the guard, shared by the page modules."""

    def __init__(self, ctx: ApiContext, sessions: SessionService) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.env = Environment(
            loader=PackageLoader("gengate.console", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(views.FILTERS)
        self.env.globals["static"] = views.static_url

    def render(
        self,
        template: str,
        viewer: Viewer | None,
        *,
        status: int = 200,
        media_origins: Iterable[str] = (),
        **values: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(viewer=viewer, **values)
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp(media_origins)}
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, viewer: Viewer | None, exc: GatewayError) -> HTMLResponse:
        return self.render("error.html", viewer, status=exc.status, error=exc)

    def guard(self, handler: Handler, *, admin: bool | None = False) -> Endpoint:
        """`handler` for a key's owner (`admin` False), the admin (True), or either (None)."""

        async def endpoint(request: Request) -> Response:
            viewer = await self.sessions.viewer(request.cookies.get(COOKIE))
            if viewer is None:
                if request.method == "GET" and "hx-request" not in request.headers:
                    return RedirectResponse(f"/console/signin?next={request.url.path}", status_code=303)
                return self.render("error.html", None, status=401, error=_signed_out())
            if admin is not None and viewer.is_admin != admin:
                return self.render("error.html", viewer, status=403, error=_wrong_kind(admin))
            if request.method == "POST" and not (same_origin(request) and await _csrf_ok(request, viewer)):
                return self.render("error.html", viewer, status=403, error=_csrf_refused())
            try:
                return await handler(request, viewer)
            except GatewayError as exc:
                return self.error(viewer, exc)

        return endpoint


class PageGroup(RouteGroup):
    """Console pages of one concern. A marked handler runs behind `Pages.guard`: for a key's
    owner by default, `admin=True` for the admin, `admin=None` for either; `public=True` (the
    sign-in pages) takes a plain Starlette handler without the guard."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.ctx = pages.ctx

    def endpoint(self, handler: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        if options.pop("public", False):
            return super().endpoint(handler, **options)
        return self.pages.guard(handler, **options)


class _PageError(GatewayError):
    pass


def _signed_out() -> GatewayError:
    return _PageError("You are signed out: sign in again.", status=401)


def _wrong_kind(admin: bool) -> GatewayError:
    if admin:
        return _PageError("This page is for the operator: sign in with the admin key.", status=403)
    return _PageError("This page is for an API key's owner: sign in with an API key.", status=403)


def _csrf_refused() -> GatewayError:
    return _PageError("The form's security token is missing or stale: reload the page.", status=403)


async def form_of(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (the console sends no files), parsed once per request."""
    cached: dict[str, str] | None = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached
    body = await request.body()
    form: dict[str, str] = {}
    if len(body) <= MAX_FORM_BYTES:
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(name, value)
    request.state.console_form = form
    return form


def same_origin(request: Request) -> bool:
    """A browser's POST names the page it came from in `Origin`: it must be this server (by
    host; a proxy may have ended TLS). A request without one is not a browser's form."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _csrf_ok(request: Request, viewer: Viewer) -> bool:
    sent = request.headers.get(CSRF_HEADER) or (await form_of(request)).get(CSRF_FIELD, "")
    return hmac.compare_digest(sent.encode("utf-8", "replace"), viewer.csrf.encode())


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
