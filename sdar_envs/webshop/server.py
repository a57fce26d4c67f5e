"""The WebShop site as a Flask app, for people (HTML forms) and for envs (a JSON API).

    python -m sdar_envs.webshop.server --port 3000            # the embedded catalog
    python -m sdar_envs.webshop.server --data-dir ~/webshop/data --threads 32

binds 127.0.0.1 by default and serves with waitress (a production WSGI server: many threads, many
concurrent sessions); `--dev` uses Flask's own server instead.

Browser pages: `/` (start a task) -> `/s/<session>` (the current page; its buttons post to
`/s/<session>/click` and the search box to `/s/<session>/search`).
JSON API (what `sdar/WebShop-v0` uses, in-process or over HTTP):

- `GET  /api/tasks?split=train` -> `{"split", "tasks": [{"id", "type", "instruction"}]}`
- `POST /api/sessions {"goal_id", "session_id"?}` -> the session's state (below)
- `POST /api/sessions/<id>/act {"action": "search[...]" | "click[...]"}` -> the state, or 400
  with `"error"` (and the unchanged state) when the action is malformed or unavailable
- `GET  /api/sessions/<id>` -> the state; `DELETE /api/sessions/<id>` ends the session

A state is `{"session_id", "page", "instruction", "goal_id", "task_type", "has_search_bar",
"clickables", "message", "done", "reward", "breakdown"?, "html"}`. Unknown sessions, goals, pages
and products are 404; malformed bodies 400; nothing a client sends is a 500.
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, abort, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from sdar_envs.serving import RateLimitedLog, check_text, read_json_object
from sdar_envs.webshop.catalog import SPLITS, Catalog
from sdar_envs.webshop.site import (
    SUB_PAGES,
    InvalidAction,
    Session,
    SessionConflict,
    Shop,
    ShopFull,
    UnknownGoal,
    UnknownSession,
)

logger = logging.getLogger(__name__)
_ERRORS = RateLimitedLog(logger)
_TEMPLATES = {"search": "search.html", "results": "results.html", "item": "item.html", "sub": "sub.html",
              "done": "done.html"}  # fmt: skip


def load_catalog(
    data_dir: str | Path | None = None, *, human_goals: bool = True, num_products: int | None = None
) -> Catalog:
    """WebShop's real data from `data_dir`, or the embedded catalog when it is None."""
    if data_dir is None:
        from sdar_envs.webshop.generator import generate_catalog

        return generate_catalog()
    from sdar_envs.webshop.catalog import load_real

    return load_real(data_dir, human=human_goals, num_products=num_products)


_SHOPS: dict[tuple, Shop] = {}
_SHOPS_LOCK = threading.Lock()


def get_shop(data_dir: str | Path | None = None, *, human_goals: bool = True, num_products: int | None = None) -> Shop:
    """The process's one `Shop` for this data (catalog, search index and spaCy load once)."""
    key = (str(Path(data_dir).expanduser().resolve()) if data_dir else None, human_goals, num_products)
    with _SHOPS_LOCK:
        shop = _SHOPS.get(key)
        if shop is None:
            from sdar_envs.webshop.search import ProductSearch

            catalog = load_catalog(data_dir, human_goals=human_goals, num_products=num_products)
            shop = _SHOPS[key] = Shop(catalog, ProductSearch(catalog))
    return shop


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _shop() -> Shop:
    return current_app.extensions["webshop"]


def _render_page(session: Session, *, error: str = "", status: int = 200):
    view = _shop().view(session)
    # The JSON API returns the error beside the unchanged page; a browser sees it on the page.
    html = render_template(_TEMPLATES[session.page], sub_pages=SUB_PAGES, error="" if _is_api() else error, **view)
    if not _is_api():
        return html, status
    body = {k: v for k, v in view.items() if k not in ("products", "product", "options")}
    body.update(html=html, options=view.get("options", {}))
    if error:
        body["error"] = error
    return jsonify(body), status


def _with_session(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(session_id: str, *args: Any, **kwargs: Any):
        try:
            session = _shop().session(session_id)
        except UnknownSession:
            abort(404, description=f"No session {session_id!r}: start one first (it may have ended).")
        return view(session, *args, **kwargs)

    return wrapper


def _apply(session: Session, action: str, *, redirect_to_page: bool):
    try:
        _shop().act(session.session_id, action)
    except InvalidAction as e:
        return _render_page(session, error=f"Invalid action: {e}", status=400)
    if redirect_to_page:
        return redirect(url_for("page", session_id=session.session_id), code=303)
    return _render_page(session)


def _split(value: str) -> str:
    if value not in SPLITS:
        abort(400, description=f"Unknown split {value!r}; use one of {list(SPLITS)}.")
    return value


def _start(goal_id: str | None, session_id: str | None, split: str) -> Session:
    try:
        return _shop().start(goal_id, session_id=session_id, split=_split(split))
    except UnknownGoal as e:
        abort(404, description=str(e.args[0]))
    except SessionConflict as e:
        abort(409, description=str(e))
    except ShopFull as e:
        abort(503, description=str(e))
    except ValueError as e:
        abort(400, description=str(e))


def _json_body() -> dict[str, Any]:
    try:
        body = read_json_object(request.get_data())
        for key, value in body.items():
            if isinstance(value, str):
                check_text(value, repr(key))
    except ValueError as e:
        abort(400, description=f"{e}: send a JSON object body, e.g. {{\"action\": \"search[red shoes]\"}}.")
    return body


# ---------------------------------------------------------------------- browser pages
def landing():
    """The start page: pick a split or a task id."""
    catalog = _shop().catalog
    return render_template("landing.html", splits=SPLITS, num_products=len(catalog.products),
                           num_goals=len(catalog.goals), catalog_name=catalog.name, error="")  # fmt: skip


def start():
    """Start a session from the landing page's form and show its search page."""
    session = _start((request.form.get("goal_id") or "").strip() or None, None, request.form.get("split", "test"))
    return redirect(url_for("page", session_id=session.session_id), code=303)


@_with_session
def page(session: Session):
    """The session's current page."""
    return _render_page(session)


@_with_session
def search(session: Session):
    """The search box (form field `q`)."""
    return _apply(session, f"search[{request.form.get('q', '')}]", redirect_to_page=True)


@_with_session
def click(session: Session):
    """A button (form field `value`)."""
    return _apply(session, f"click[{request.form.get('value', '')}]", redirect_to_page=True)


# ---------------------------------------------------------------------- JSON API
def api_tasks():
    """The goals of `?split=`."""
    split = _split(request.args.get("split", "train"))
    return jsonify({"split": split, "tasks": _shop().tasks(split)})


def api_start():
    """Start a session on a goal (or a random goal of `split`)."""
    body = _json_body()
    goal_id, session_id = body.get("goal_id"), body.get("session_id")
    if not all(v is None or isinstance(v, str) for v in (goal_id, session_id)):
        abort(400, description="'goal_id' and 'session_id' must be strings.")
    return _render_page(_start(goal_id, session_id, body.get("split", "test")))


@_with_session
def api_state(session: Session):
    """A session's state."""
    return _render_page(session)


@_with_session
def api_act(session: Session):
    """Apply one action to a session."""
    action = _json_body().get("action")
    if not isinstance(action, str):
        abort(400, description="The body needs 'action': a string such as 'search[red shoes]' or 'click[buy now]'.")
    return _apply(session, action, redirect_to_page=False)


def api_close(session_id: str):
    """End a session."""
    if not _shop().close(session_id):
        abort(404, description=f"No session {session_id!r}.")
    return jsonify({"closed": session_id})


def healthz():
    """Liveness and the live session count."""
    return jsonify({"ok": True, "catalog": _shop().catalog.name, "sessions": _shop().num_sessions})


def _http_error(e: HTTPException):
    if _is_api():
        return jsonify({"error": e.description, "status": e.code}), e.code
    return render_template("error.html", status=f"{e.code} {e.name}", error=e.description), e.code


def _unexpected(e: Exception):  # a bug, never the client's input: log it (one line, rate-limited), answer 500
    _ERRORS.error("webshop: unexpected error on %s %s: %s: %s", request.method, request.path, type(e).__name__,
                  str(e).splitlines()[0][:200] if str(e) else "")
    if _is_api():
        return jsonify({"error": f"internal error: {type(e).__name__}: {e}", "status": 500}), 500
    return render_template("error.html", status="500 Internal Server Error", error=str(e)), 500


_ROUTES = [
    ("/", landing, ["GET"]),
    ("/start", start, ["POST"]),
    ("/s/<session_id>", page, ["GET"]),
    ("/s/<session_id>/search", search, ["POST"]),
    ("/s/<session_id>/click", click, ["POST"]),
    ("/api/tasks", api_tasks, ["GET"]),
    ("/api/sessions", api_start, ["POST"]),
    ("/api/sessions/<session_id>", api_state, ["GET"]),
    ("/api/sessions/<session_id>/act", api_act, ["POST"]),
    ("/api/sessions/<session_id>", api_close, ["DELETE"]),
    ("/healthz", healthz, ["GET"]),
]


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(shop: Shop | None = None, *, allowed_hosts: tuple[str, ...] = LOOPBACK, **catalog_kwargs: Any) -> Flask:
    """The Flask app over `shop` (default: `get_shop(**catalog_kwargs)`).

    Only requests whose `Host` names one of `allowed_hosts` are answered (a 421 otherwise), so a web
    page the user visits cannot reach the site through a DNS name rebound to this machine.
    """
    app = Flask(__name__, template_folder=str(Path(__file__).with_name("templates")))
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.extensions["webshop"] = shop or get_shop(**catalog_kwargs)
    allowed = {h.strip("[]").lower() for h in allowed_hosts}

    @app.before_request
    def check_host():
        host = request.host.lower()
        name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if ":" in host else host
        if name not in allowed:
            abort(421, description=f"this server answers requests for {sorted(allowed)}, not {host[:80]!r}.")

    for rule, view, methods in _ROUTES:
        app.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=methods)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def serve(app: Flask, host: str = "127.0.0.1", port: int = 3000, threads: int = 16) -> None:
    """Serve `app` with waitress (blocks)."""
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, threads=threads, connection_limit=1000, channel_timeout=120)


def main(argv: list[str] | None = None) -> None:
    """`python -m sdar_envs.webshop.server`: serve the site."""
    parser = argparse.ArgumentParser(description="Serve the WebShop site (HTML for people, JSON for envs).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--data-dir", default=None, help="WebShop's real data; default: the embedded catalog")
    parser.add_argument("--synthetic-goals", action="store_true", help="ignore items_human_ins.json")
    parser.add_argument("--num-products", type=int, default=None, help="load only the first N products")
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    parser.add_argument("--dev", action="store_true", help="Flask's development server instead of waitress")
    parser.add_argument("--client-session-ids", action="store_true",
                        help="let clients choose session ids (the original WebShop's URL scheme); default: issued here")
    parser.add_argument("--allowed-host", action="append", default=[],
                        help="a host name requests may be addressed to, besides the bound one and the loopback names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shop = get_shop(args.data_dir, human_goals=not args.synthetic_goals, num_products=args.num_products)
    shop.client_session_ids = args.client_session_ids
    app = create_app(shop, allowed_hosts=(*LOOPBACK, args.host, *args.allowed_host))
    print(
        f"WebShop: {len(shop.catalog.products)} products, {len(shop.catalog.goals)} goals; "
        f"http://{args.host}:{args.port}/",
        flush=True,
    )
    if args.dev:
        app.run(host=args.host, port=args.port, threaded=True)
    else:
        serve(app, args.host, args.port, args.threads)


if __name__ == "__main__":
    main()
