"""A real S3-compatible server on loopback for the tests: moto's S3, run as its own process.

moto stores objects and answers the S3 API over HTTP but does not check presigned URLs,
so a small WSGI layer in front does what S3 does with them: it recomputes the signature
with botocore's own SigV4 signer (not gengate's) and refuses a wrong one, an expired one,
or one valid for over 7 days, as S3 does (403 or 400 with an S3 error document).

Run: `python s3_server.py ACCESS_KEY SECRET_KEY`; it prints its port, then serves until killed.
"""

from __future__ import annotations

import logging
import sys
import time
from calendar import timegm
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_AUTH_PARAMS = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
}


class PresignCheck:
    """Refuses presigned requests whose signature or expiry S3 would refuse."""

    def __init__(self, app: WsgiApp, access_key: str, secret_key: str) -> None:
        self.app = app
        self.access_key = access_key
        self.secret_key = secret_key

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "X-Amz-Signature" in params:
            refusal = self.refusal(environ, params)
            if refusal is not None:
                status, code, message = refusal
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                ).encode()
                start_response(status, [("Content-Type", "application/xml")])
                return [body]
        return self.app(environ, start_response)

    def refusal(self, environ: dict[str, Any], params: dict[str, str]) -> tuple[str, str, str] | None:
        try:
            expires = int(params["X-Amz-Expires"])
            signed_at = timegm(time.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
            access_key, _day, region, service, _end = params["X-Amz-Credential"].split("/")
        except (KeyError, ValueError):
            return "400 Bad Request", "AuthorizationQueryParametersError", "Malformed query auth."
        if not 1 <= expires <= 604800:
            return "400 Bad Request", "AuthorizationQueryParametersError", "X-Amz-Expires out of range."
        if access_key != self.access_key:
            return "403 Forbidden", "InvalidAccessKeyId", "Unknown access key."
        if params["X-Amz-Signature"] != self.expected_signature(environ, params, region, service, expires):
            return "403 Forbidden", "SignatureDoesNotMatch", "The signature does not match."
        if time.time() > signed_at + expires:
            return "403 Forbidden", "AccessDenied", "Request has expired"
        return None

    def expected_signature(
        self, environ: dict[str, Any], params: dict[str, str], region: str, service: str, expires: int
    ) -> str:
        """botocore's presigning steps, with the signing time taken from the URL."""
        raw_path = environ.get("RAW_URI", environ["PATH_INFO"]).split("?", 1)[0]
        query = urlencode([(k, v) for k, v in params.items() if k not in _AUTH_PARAMS])
        host = environ["HTTP_HOST"]
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=f"http://{host}{raw_path}?{query}")
        request.headers["host"] = host
        request.context["timestamp"] = params["X-Amz-Date"]
        credentials = Credentials(self.access_key, self.secret_key, params.get("X-Amz-Security-Token"))
        auth = S3SigV4QueryAuth(credentials, service, region, expires)
        auth._modify_request_before_signing(request)
        canonical = auth.canonical_request(request)
        return str(auth.signature(auth.string_to_sign(request, canonical), request))


def main() -> None:
    access_key, secret_key = sys.argv[1], sys.argv[2]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = PresignCheck(create_backend_app("s3"), access_key, secret_key)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
