"""PostgreSQL unreachable from the first request on: every endpoint that needs it answers a 503 its client
understands, quickly, even when the database host does not answer at all.

* Connections refused (the database is stopped): the protocol endpoints answer the OAuth error
  ``temporarily_unavailable`` in JSON with ``Retry-After`` and ``no-store``; a person gets the French page.
* A host that accepts connections and never says a word (a PostgreSQL whose machine hangs, or a network that
  drops packets): the request fails after ``POSTGRESQL_CONNECT_TIMEOUT_SECONDS`` instead of being held for
  ever. The bound below only guards the test against hanging itself; it is four times the setting.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from flask import Flask

from hospiconnect import create_app
from hospiconnect.crypto import generate_key_file
from hospiconnect.db import POSTGRESQL_CONNECT_TIMEOUT_SECONDS
from hospiconnect.settings import Settings
from tests.multiprocess.live import free_port

GUARD_SECONDS = 4 * POSTGRESQL_CONNECT_TIMEOUT_SECONDS
UNAVAILABLE_TITLE = "Service momentanément indisponible"


def app_on(database_url: str, folder: Path) -> Flask:
    generate_key_file(folder / "keys.json")
    return create_app(Settings(env="test", instance_path=folder, database_url=database_url,
                               secret_key_file=folder / "keys.json", issuer="http://localhost"))


def test_with_connections_refused_each_client_gets_the_503_it_understands(tmp_path: Path) -> None:
    client = app_on(f"postgresql://postgres@127.0.0.1:{free_port()}/hospiconnect", tmp_path).test_client()
    bearer = {"Authorization": "Bearer 0123456789abcdef"}
    answers = {
        "/token": client.post("/token", data={"grant_type": "authorization_code", "code": "x",
                                              "redirect_uri": "https://rp.example/cb"},
                              headers={"Authorization": "Basic Y2xpZW50OnNlY3JldA=="}),
        "/introspect": client.post("/introspect", data={"token": "x"}),
        "/revoke": client.post("/revoke", data={"token": "x"}),
        "/userinfo": client.get("/userinfo", headers=bearer),
        "/jwks.json": client.get("/jwks.json"),
    }
    for path, response in answers.items():
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert response.get_json()["error"] == "temporarily_unavailable", path
        assert response.get_json()["error_description"].isascii(), path
        assert response.headers["Retry-After"] == "5" and response.headers["Cache-Control"] == "no-store", path
    page = client.get("/authorize", query_string={"client_id": "x"}, headers={"Accept": "text/html"})
    assert page.status_code == 503 and page.mimetype == "text/html" and page.headers["Retry-After"] == "5"
    assert UNAVAILABLE_TITLE in page.get_data(as_text=True)


def test_a_silent_database_host_gives_a_503_instead_of_a_hang(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        client = app_on(f"postgresql://postgres@127.0.0.1:{port}/hospiconnect", tmp_path).test_client()
        answers = []
        asking = threading.Thread(target=lambda: answers.append(client.get("/connexion/une-demande")), daemon=True)
        asking.start()
        asking.join(timeout=GUARD_SECONDS)
        assert not asking.is_alive(), "the request is held by a database host that does not answer"
    (page,) = answers
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert UNAVAILABLE_TITLE in page.get_data(as_text=True)
