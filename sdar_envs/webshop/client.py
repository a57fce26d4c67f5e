"""Clients of the WebShop site's JSON API, and WebShop's text rendering of its pages.

`InProcessClient` calls the Flask app through its test client (no port, no thread); `HttpClient`
talks to a running server (`python -m sdar_envs.webshop.server`). Both answer
`request(method, path, body) -> (status, json)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import Comment

_INVISIBLE = {"style", "script", "head", "title", "meta", "[document]"}


def html_to_text(html: str) -> str:
    """WebShop's simple text mode: the visible texts of a page joined with ` [SEP] `."""
    soup = BeautifulSoup(html, "html.parser")
    texts = []
    for node in soup.find_all(string=True):
        if isinstance(node, Comment) or node.parent is None or node.parent.name in _INVISIBLE:
            continue
        text = node.strip()
        if text:
            texts.append(text)
    return " [SEP] ".join(texts)


class InProcessClient:
    """The JSON API through the Flask app's test client (no port, no thread)."""

    def __init__(self, data_dir: str | Path | None, human_goals: bool, num_products: int | None) -> None:
        from sdar_envs.webshop.server import create_app, get_shop

        self.app = create_app(get_shop(data_dir, human_goals=human_goals, num_products=num_products))
        self.client = self.app.test_client()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, Any]]:
        response = self.client.open(path, method=method, json=body)
        return response.status_code, response.get_json(silent=True) or {}


class HttpClient:
    """The JSON API of a running server (`python -m sdar_envs.webshop.server`)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, Any]]:
        import requests

        try:
            response = self.http.request(method, self.base_url + path, json=body, timeout=self.timeout)
        except requests.RequestException as e:
            raise ConnectionError(
                f"WebShop server at {self.base_url} did not answer {method} {path}: {e}. "
                "Start it with: python -m sdar_envs.webshop.server --port PORT"
            ) from e
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": response.text[:300]}
