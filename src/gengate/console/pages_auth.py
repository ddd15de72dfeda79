"""Signing in and out, and where `/` and `/console` lead."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.routing import route
from gengate.console.sessions import COOKIE, COOKIE_PATH, Viewer
from gengate.console.web import PageGroup, form_of, same_origin, see_other
from gengate.domain.errors import GatewayError


class _CrossSite(GatewayError):
    status, code, default_message = 403, "forbidden", "Sign in from this server's own sign-in page."


def _home(viewer: Viewer) -> str:
    return "/console/keys" if viewer.is_admin else "/console/playground"


def _next_path(raw: str | None) -> str | None:
    """Only a path of the console itself: never another site (an open redirect)."""
    if raw and raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return None


class AuthPages(PageGroup):
    @route("/", "GET", public=True)
    async def slash(self, _request: Request) -> Response:
        """`/` leads to the console (which sees its cookie only under `/console`)."""
        return see_other("/console")

    @route("/console", "GET", public=True)
    @route("/console/", "GET", public=True)
    async def root(self, request: Request) -> Response:
        viewer = await self.pages.sessions.viewer(request.cookies.get(COOKIE))
        return see_other(_home(viewer) if viewer is not None else "/console/signin")

    @route("/console/signin", "GET", public=True)
    async def signin_form(self, request: Request) -> Response:
        return self.pages.render("signin.html", None, next=_next_path(request.query_params.get("next")))

    @route("/console/signin", "POST", public=True)
    async def signin(self, request: Request) -> Response:
        if not same_origin(request):  # a sign-in posted by another site (login CSRF)
            return self.pages.render("error.html", None, status=403, error=_CrossSite())
        form = await form_of(request)
        address = request.client.host if request.client is not None else "unknown"
        try:
            session_id, viewer = await self.pages.sessions.sign_in(form.get("key", ""), address)
        except GatewayError as exc:
            response = self.pages.render(
                "signin.html", None, status=exc.status, error=exc, next=_next_path(form.get("next"))
            )
            for name, value in exc.headers.items():
                response.headers[name] = value
            return response
        redirect = see_other(_next_path(form.get("next")) or _home(viewer))
        redirect.set_cookie(
            COOKIE,
            session_id,
            max_age=self.pages.sessions.ttl_ms // 1000,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return redirect

    @route("/console/signout", "POST", admin=None)
    async def signout(self, _request: Request, viewer: Viewer) -> Response:
        await self.pages.sessions.sign_out(viewer)
        response = see_other("/console/signin")
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
        return response
