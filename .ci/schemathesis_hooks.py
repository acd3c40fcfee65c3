"""Signed-in users for schemathesis (loaded through SCHEMATHESIS_HOOKS by
.ci/schemathesis.sh), so that the operations behind a bearer token are
exercised past the token check.

- GET /sessions, DELETE /sessions/{id}, GET /authorize and
  GET /auth/authorize-token share one user, signed up again when its token
  is refused (e.g. after schemathesis ended that user's session).
- POST /password and DELETE /account get a new user for every request, whose
  password is the one the document's examples present: the examples change
  the password or delete the account (200), everything else schemathesis
  makes up is a wrong password (401) or a refused body (400/422), and no
  request's success can take the token of another away.
"""

import json
import os
import secrets
import urllib.request

import schemathesis

BASE = os.environ["AUTHD_BASE_URL"]


def _call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{BASE}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _example_password():
    """The password of DELETE /account's example in the served document."""
    document = _call("GET", "/openapi.json")
    return document["components"]["schemas"]["PasswordConfirmation"]["example"]["password"]


EXAMPLE_PASSWORD = _example_password()


def _sign_up(password):
    email = f"schemathesis-{secrets.token_hex(8)}@example.com"
    return _call("POST", "/signup", {"email": email, "password": password})["access_token"]


def _bearer(case, token):
    case.headers = case.headers or {}
    case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.auth().apply_to(path=["/sessions", "/sessions/{id}", "/authorize", "/auth/authorize-token"])
class SharedUser:
    def get(self, case, ctx):
        return _sign_up(secrets.token_urlsafe(24))

    def set(self, case, data, ctx):
        _bearer(case, data)


@schemathesis.auth(refresh_interval=None).apply_to(path=["/password", "/account"])
class UserPerRequest:
    def get(self, case, ctx):
        return _sign_up(EXAMPLE_PASSWORD)

    def set(self, case, data, ctx):
        _bearer(case, data)
