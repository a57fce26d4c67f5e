"""The shop itself: sessions, pages and the two kinds of action, independent of HTTP.

A session holds one shopper's state: the goal, the page being shown, the search results and the
options picked on the current item. Pages follow WebShop:

    search --search[q]--> results (10 per page of the top 50; Next > / < Prev / Back to Search)
    results --click[asin]--> item (options by group, price, rating, Description / Features /
    Reviews / Attributes, Buy Now) --click[buy now]--> done (the reward)

`Shop.act(session_id, "search[...]" | "click[...]")` changes the state or raises `InvalidAction`
(and changes nothing); `Shop.view(session)` is what a template renders. The Flask app
(`server.py`) is a thin layer over this class, and sessions are safe to use from many threads.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sdar_envs.webshop.catalog import Catalog, Goal, Product
from sdar_envs.webshop.reward import RewardBreakdown, purchase_reward

RESULTS_PER_PAGE = 10
SUB_PAGES = ("Description", "Features", "Reviews", "Attributes")
BACK, NEXT, PREV, BUY = "Back to Search", "Next >", "< Prev", "Buy Now"
MAX_SESSIONS = 20_000
IDLE_S = 3600.0  # a session unused this long may make room for a new one when the shop is full
MAX_QUERY_CHARS = 500
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)
_SESSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class InvalidAction(ValueError):
    """An action that is malformed or not available on the current page; the state is unchanged."""


class UnknownSession(KeyError):
    """No session has this id (never started, closed, or ended after `IDLE_S` unused when the shop was full)."""


class SessionConflict(ValueError):
    """A session with this id is live (never silently restarted), or a client chose an id the shop issues itself."""


class ShopFull(RuntimeError):
    """`max_sessions` sessions are live and none has been idle for `idle_s`: no room without ending an active one."""


class UnknownGoal(KeyError):
    """No goal has this id in the catalog."""


@dataclass
class Session:
    """One shopper's state."""

    session_id: str
    goal: Goal
    page: str = "search"  # search | results | item | sub | done
    query: str = ""
    results: list[str] = field(default_factory=list)
    page_number: int = 1
    asin: str | None = None
    sub_page: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    bought: RewardBreakdown | None = None
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    last_used: float = field(default_factory=time.monotonic, repr=False)


class Shop:
    """A WebShop site over one catalog and search engine."""

    def __init__(self, catalog: Catalog, search: Any, *, max_sessions: int = MAX_SESSIONS, idle_s: float = IDLE_S,
                 client_session_ids: bool = False) -> None:
        """A shop of `catalog` searched by `search`.

        `client_session_ids` lets a client name its session (the original WebShop's URL scheme);
        otherwise the shop issues every id, unguessable, and a client's id is refused.
        """
        self.catalog = catalog
        self.search_engine = search
        self.max_sessions, self.idle_s, self.client_session_ids = max_sessions, idle_s, client_session_ids
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.started = time.time()

    # ------------------------------------------------------------------ sessions
    def tasks(self, split: str) -> list[dict[str, str]]:
        """The goals of a split: `[{"id", "type", "instruction"}]` in the split's fixed order."""
        return [{"id": g.goal_id, "type": g.category, "instruction": g.instruction} for g in self.catalog.split(split)]

    def start(self, goal_id: str | None = None, *, session_id: str | None = None, split: str = "test",
              rng: random.Random | None = None) -> Session:  # fmt: skip
        """Start a session on a goal (a random goal of `split` when none is named); its id is issued here.

        A live session is never restarted (`SessionConflict`); when `max_sessions` are live, the one
        idle longest makes room if it has been idle `idle_s`, else `ShopFull`.
        """
        if goal_id is None:
            goals = self.catalog.split(split)
            if not goals:
                raise UnknownGoal(f"split {split!r} holds no goals")
            goal = (rng or random).choice(goals)
        else:
            goal = self.catalog.goal_by_id.get(goal_id)
            if goal is None:
                raise UnknownGoal(f"no goal {goal_id!r} in catalog {self.catalog.name!r}")
        if session_id is None:
            session_id = secrets.token_urlsafe(18)  # 144 random bits: knowing it is the only way in
        elif not self.client_session_ids:
            raise SessionConflict("session ids are issued by the server (start it with --client-session-ids to "
                                  "let clients choose them); leave 'session_id' out")
        elif not _SESSION_ID.match(session_id):
            raise ValueError(
                f"bad session id {session_id[:80]!r}: use 1-64 letters, digits, '_', '-' or '.'"
            )
        session = Session(session_id=session_id, goal=goal)
        with self._lock:
            if session_id in self._sessions:
                raise SessionConflict(f"session {session_id!r} is live: close it first (DELETE) to start it again")
            if len(self._sessions) >= self.max_sessions:
                oldest = next(iter(self._sessions.values()))  # least recently used first
                if time.monotonic() - oldest.last_used < self.idle_s:
                    raise ShopFull(f"{len(self._sessions)} sessions are live (the most this server keeps) and none "
                                   f"has been idle for {self.idle_s:.0f} s: close finished sessions first")
                self._sessions.popitem(last=False)
            self._sessions[session_id] = session
        return session

    def session(self, session_id: str) -> Session:
        """The live session with this id (raises `UnknownSession`)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise UnknownSession(session_id)
            self._sessions.move_to_end(session_id)
            session.last_used = time.monotonic()
        return session

    def close(self, session_id: str) -> bool:
        """Forget a session; False when there was none."""
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    @property
    def num_sessions(self) -> int:
        """How many sessions are live."""
        return len(self._sessions)

    # ------------------------------------------------------------------ actions
    def act(self, session_id: str, action: str) -> Session:
        """Apply `search[...]` or `click[...]` to a session (raises `InvalidAction`)."""
        session = self.session(session_id)
        match = _ACTION.match(action) if isinstance(action, str) else None
        if match is None:
            raise InvalidAction(
                f"{str(action)[:200]!r} is not an action; write search[your keywords] on the search "
                "page, or click[button] with one of the clickable buttons."
            )
        kind, argument = match.group(1).lower(), match.group(2).strip()
        with session.lock:
            if kind == "search":
                self._search(session, argument)
            else:
                self._click(session, argument)
        return session

    def _search(self, session: Session, query: str) -> None:
        if session.page != "search":
            raise InvalidAction(
                "there is no search bar on this page; click[back to search] first."
                if session.page != "done" else "the purchase is done; the episode is over."
            )
        if not query:
            raise InvalidAction("search[] needs keywords, e.g. search[red running shoes].")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidAction(f"the search query is {len(query)} characters; keep it under {MAX_QUERY_CHARS}.")
        session.query = query
        session.results = self.search_engine.search(query)
        session.page, session.page_number, session.message = "results", 1, ""

    def clickables(self, session: Session) -> list[str]:
        """The buttons of the session's current page, as shown (click values are these, any case)."""
        if session.page == "results":
            pages = self.num_pages(session)
            nav = [BACK] + ([PREV] if session.page_number > 1 else []) + ([NEXT] if session.page_number < pages else [])
            return nav + self.page_results(session)
        if session.page == "item":
            product = self.catalog.by_asin[session.asin]
            values = [v for vals in product.options.values() for v in vals]
            return [BACK, PREV, *values, *SUB_PAGES, BUY]
        if session.page == "sub":
            return [BACK, PREV]
        return []

    def _click(self, session: Session, value: str) -> None:
        wanted = value.strip().lower()
        buttons = {b.lower(): b for b in reversed(self.clickables(session))}
        if wanted not in buttons:
            if session.page == "done":
                raise InvalidAction("the purchase is done; the episode is over.")
            shown = ", ".join(self.clickables(session)) or "none (use search[...])"
            raise InvalidAction(f"nothing called {value[:100]!r} can be clicked on this page. Clickable: {shown}.")
        button = buttons[wanted]
        session.message = ""
        if button == BACK:
            session.page, session.query, session.results = "search", "", []
            session.asin, session.sub_page, session.options = None, None, {}
        elif button == NEXT:
            session.page_number += 1
        elif button == PREV:
            if session.page == "results":
                session.page_number -= 1
            elif session.page == "item":
                session.page, session.asin, session.options = "results", None, {}
            else:
                session.page, session.sub_page = "item", None
        elif session.page == "results":
            session.page, session.asin, session.options = "item", button, {}
        elif button in SUB_PAGES:
            session.page, session.sub_page = "sub", button
        elif button == BUY:
            product = self.catalog.by_asin[session.asin]
            session.bought = purchase_reward(product.as_dict(), session.goal.as_dict(), product.price, session.options)
            session.page = "done"
        else:
            product = self.catalog.by_asin[session.asin]
            group = next(g for g, vals in product.options.items() if button in vals)
            session.options[group] = button
            session.message = f"You have clicked {button}."

    # ------------------------------------------------------------------ views
    def num_pages(self, session: Session) -> int:
        """Result pages of the session's search (at least 1)."""
        return max(1, -(-len(session.results) // RESULTS_PER_PAGE))

    def page_results(self, session: Session) -> list[str]:
        """The asins on the current results page."""
        start = (session.page_number - 1) * RESULTS_PER_PAGE
        return session.results[start : start + RESULTS_PER_PAGE]

    def product(self, asin: str) -> Product:
        """The product with this asin (raises KeyError)."""
        return self.catalog.by_asin[asin]

    def view(self, session: Session) -> dict[str, Any]:
        """Everything a page template shows, and the state the JSON API returns."""
        view: dict[str, Any] = {
            "session_id": session.session_id,
            "page": session.page,
            "instruction": session.goal.instruction,
            "goal_id": session.goal.goal_id,
            "task_type": session.goal.category,
            "has_search_bar": session.page == "search",
            "clickables": self.clickables(session),
            "message": session.message,
            "done": session.page == "done",
            "reward": session.bought.reward if session.bought else 0.0,
        }
        if session.page == "results":
            view.update(query=session.query, page_number=session.page_number, total=len(session.results),
                        products=[self.product(a) for a in self.page_results(session)],
                        has_prev=session.page_number > 1, has_next=session.page_number < self.num_pages(session))
        elif session.page in ("item", "sub"):
            view.update(product=self.product(session.asin), options=dict(session.options), sub_page=session.sub_page)
        elif session.page == "done":
            view.update(breakdown=session.bought.__dict__, options=dict(session.options),
                        product=self.product(session.asin))
        return view
