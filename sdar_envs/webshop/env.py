"""`sdar/WebShop-v0`: shop for the goal product on the WebShop site, through its JSON API.

    env = gym.make("sdar/WebShop-v0")                                  # embedded catalog, in-process
    env = gym.make("sdar/WebShop-v0", data_dir="~/webshop/data", split="test")
    env = gym.make("sdar/WebShop-v0", base_url="http://127.0.0.1:3000")  # a running server

In-process (the default) the env calls the same Flask app through its test client, so no port is
needed; with `base_url` it talks HTTP to `python -m sdar_envs.webshop.server`, and many env
workers can share one server. Either way each env holds one session on the site.

Observations: `observation_mode="text"` (the default) joins the page's visible texts with
` [SEP] `, as WebShop's simple text mode does; `"html"` gives the page's HTML. Actions:
`search[keywords]` when the search bar is shown, `click[button]` for a button on the page
(`info["admissible_actions"]` lists them). A malformed or unavailable action changes nothing and
returns the reason with the page, `action_valid=False`. Buying ends the episode with reward = the
WebShop score in [0, 1]; `won` means a score of 1.0; `task_type` is the product category.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdar_envs.answers import PromptTemplate
from sdar_envs.core import ExpertStep, TaskStart, TextEnv, Transition
from sdar_envs.webshop.client import HttpClient, InProcessClient, html_to_text
from sdar_envs.webshop.expert import demonstration_step, oracle_plan

SEARCH_ACTION = "search[<query>]"
MAX_ACTION_CHARS = 2000


class WebShopEnv(TextEnv):
    """WebShop (Yao et al., 2022): find and buy the product an instruction describes.

    ## Description
    A shopping site with a search engine (BM25 over the catalog), result pages, product pages
    with option groups and a Buy Now button. The instruction names a product type, attributes,
    options and a price limit; the purchase is scored by WebShop's reward.

    ## Action Space
    `search[keywords]` on the search page; `click[button]` for a button of the current page (a
    product id, an option value, `next >`, `< prev`, `back to search`, `description`,
    `features`, `reviews`, `attributes`, `buy now`; any case). Anything else, or a button that is
    not on the page, changes nothing: the reason and the same page come back, `action_valid=False`.

    ## Observation Space
    The page's visible texts joined with ` [SEP] ` (or its HTML, `observation_mode="html"`). At
    reset:

        Instruction: [SEP] find me hooded and windproof winter jacket with color: olive green, and
        size: medium, and price lower than 120.00 dollars [SEP] WebShop [SEP] Search

    ## Rewards
    0 until Buy Now; then the WebShop score in [0, 1] (`sdar_envs.webshop.reward`).

    ## Starting State
    The search page of the goal chosen by `reset(options={"task_id"|"task_index": ...})` or the
    seed.

    ## Episode End
    Terminated by Buy Now; truncated after 15 steps (`max_episode_steps`).

    ## Information
    `task` the instruction, `task_id` the goal id ("<asin>:<n>"), `task_type` the product
    category (beauty, electronics, fashion, garden, grocery on both catalogs), `admissible_actions`
    `search[<query>]` when the search bar shows plus `click[...]` for every button, `won` (score
    1.0), `score` the purchase's WebShop score (0 before buying), `action_valid`, `step`.

    ## Arguments
    - `split`: "train" | "valid" | "test" (fixed: one shuffle with seed 233).
    - `data_dir`: WebShop's own files (see `sdar_envs.webshop.catalog`); default the embedded catalog.
    - `base_url`: a running `python -m sdar_envs.webshop.server` to use instead of the in-process site.
    - `observation_mode`: "text" | "html". `human_goals`: use `items_human_ins.json` when present.
    - `num_products`: load only the first N products. `timeout`: seconds per HTTP request.
    - `render_mode`: "ansi" renders the transcript.

    ## Version History
    - v0: initial version.
    """

    splits = ("train", "valid", "test")
    skill_bank = "webshop"
    prompt_template = PromptTemplate(
        "webshop",
        "You are an agent shopping on WebShop, an online store. Find the product that fits the "
        "instruction, choose the options it asks for, and buy it. Pages are shown as their visible "
        "texts separated by [SEP].",
        "First reason about what to do next inside <think> </think>. Then write exactly one action "
        "inside <action> </action>: search[your keywords] when search[<query>] is admissible, or "
        "one of the admissible click[...] actions.",
    )
    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        split: str = "train",
        data_dir: str | Path | None = None,
        base_url: str | None = None,
        observation_mode: str = "text",
        human_goals: bool = True,
        num_products: int | None = None,
        render_mode: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(split=split, render_mode=render_mode)
        if observation_mode not in ("text", "html"):
            raise ValueError(f"WebShopEnv: observation_mode={observation_mode!r}; use 'text' or 'html'.")
        if base_url is not None and data_dir is not None:
            raise ValueError("WebShopEnv: give data_dir to the server, not to an env that uses base_url.")
        self.observation_mode = observation_mode
        self.client = (
            HttpClient(base_url, timeout) if base_url else InProcessClient(data_dir, human_goals, num_products)
        )
        tasks = self._call("GET", f"/api/tasks?split={split}")["tasks"]
        self.set_tasks([t["id"] for t in tasks], [t["type"] for t in tasks])
        self.session_id: str | None = None  # issued by the site at each reset
        self._state: dict[str, Any] = {}
        self._queries: list[str] = []  # searches made this episode (the demonstrator's memory)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        status, payload = self.client.request(method, path, body)
        if status != 200:
            raise RuntimeError(f"WebShop {method} {path} answered {status}: {payload.get('error', payload)}")
        return payload

    def _observe(self, state: dict[str, Any]) -> str:
        return state["html"] if self.observation_mode == "html" else html_to_text(state["html"])

    @staticmethod
    def _admissible(state: dict[str, Any]) -> list[str]:
        actions = [SEARCH_ACTION] if state.get("has_search_bar") else []
        return actions + [f"click[{c.lower()}]" for c in state.get("clickables", [])]

    def _start(self, index: int) -> TaskStart:
        self._end_session()
        state = self._call("POST", "/api/sessions", {"goal_id": self.task_ids[index]})
        self.session_id = state["session_id"]
        self._state = state
        self._queries = []
        return TaskStart(self._observe(state), state["instruction"], state["task_type"], self._admissible(state))

    def _act(self, action: str) -> Transition:
        if self._state.get("done"):
            return Transition("The purchase is done; reset() to start a new task.", 0.0, True,
                              self._score >= 1.0, self._score, False, [])  # fmt: skip
        if len(action) > MAX_ACTION_CHARS:
            reason = (f"Invalid action: the action is {len(action)} characters; actions are search[keywords] or "
                      f"click[button], under {MAX_ACTION_CHARS}.")  # fmt: skip
            return self._invalid(reason, self._state)
        status, state = self.client.request("POST", f"/api/sessions/{self.session_id}/act", {"action": action})
        if status == 400 and "html" in state:  # malformed or unavailable: the page is unchanged
            return self._invalid(state["error"], state)
        if status != 200:
            raise RuntimeError(f"WebShop act {action[:100]!r} answered {status}: {state.get('error', state)}")
        self._state = state
        if action.strip().lower().startswith("search["):
            self._queries.append(action.strip()[len("search[") : -1])
        score = float(state["reward"]) if state["done"] else 0.0
        return Transition(self._observe(state), score, bool(state["done"]), score >= 1.0, score, True,
                          self._admissible(state))  # fmt: skip

    def _invalid(self, reason: str, state: dict[str, Any]) -> Transition:
        self._state = state
        return Transition(f"{reason}\n{self._observe(state)}", 0.0, False, False, 0.0, False, self._admissible(state))

    def oracle_actions(self) -> list[str]:
        """Actions that buy the goal product with the goal options (a scripted expert)."""
        shop = self._shop("oracle_actions()")
        goal = shop.session(self.session_id).goal
        return oracle_plan(shop, goal, shop.product(goal.asin))

    def expert_step(self) -> ExpertStep:
        """The demonstrator's next action and thought on the current page (`webshop.expert.demonstration_step`)."""
        shop = self._shop("expert_step()")
        action, thought = demonstration_step(shop, shop.session(self.session_id), self._queries, self.thought_rng())
        return ExpertStep(action, thought)

    def _shop(self, caller: str) -> Any:
        if not isinstance(self.client, InProcessClient):
            raise RuntimeError(f"{caller} needs the in-process site (no base_url).")
        if not self._state:
            raise RuntimeError(f"{caller} needs a reset() first.")
        return self.client.app.extensions["webshop"]

    def close(self) -> None:
        """End this env's session on the site and close its connection.

        The in-process site (catalog, index, JVM) is shared by every env of the process and stays.
        """
        self._end_session()
        if isinstance(self.client, HttpClient):
            self.client.http.close()
        super().close()

    def _end_session(self) -> None:
        """Close this env's session on the site, if it has one (a connection already gone is fine)."""
        if self.session_id is not None:
            try:
                self.client.request("DELETE", f"/api/sessions/{self.session_id}")
            except ConnectionError:
                pass
            self.session_id = None
        self._state = {}
