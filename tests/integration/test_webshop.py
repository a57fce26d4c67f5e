"""sdar/WebShop-v0 on the embedded catalog and on real data, in-process and over HTTP."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("pyserini", reason="WebShop's extras are not installed (pip install 'sdar[webshop]')")

from sdar_envs.serving import BackgroundServer  # noqa: E402
from sdar_envs.webshop import catalog as catalog_mod  # noqa: E402
from sdar_envs.webshop.client import html_to_text  # noqa: E402
from sdar_envs.webshop.env import SEARCH_ACTION, WebShopEnv  # noqa: E402
from sdar_envs.webshop.generator import generate_catalog  # noqa: E402
from sdar_envs.webshop.server import create_app, get_shop  # noqa: E402
from tests.conftest import shared_path  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = WebShopEnv(split="test")
    yield e
    e.close()


def play_oracle(env, task_index):
    env.reset(options={"task_index": task_index})
    info = {}
    for action in env.unwrapped.oracle_actions():
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["action_valid"], (action, obs)
    return reward, terminated, info


# ---------------------------------------------------------------------------- catalog
def test_embedded_catalog_is_deterministic_and_rich():
    a, b = generate_catalog(), generate_catalog()
    assert [p.title for p in a.products] == [p.title for p in b.products]
    assert [g.goal_id for g in a.goals] == [g.goal_id for g in b.goals]
    assert len(a.products) == 900 and catalog_mod.categories(a.goals) == [
        "beauty",
        "electronics",
        "fashion",
        "garden",
        "grocery",
    ]
    splits = {s: {g.goal_id for g in a.split(s)} for s in catalog_mod.SPLITS}
    assert (len(splits["test"]), len(splits["valid"])) == (500, 1000) and len(splits["train"]) > 900
    assert not (
        splits["train"] & splits["valid"] or splits["train"] & splits["test"] or splits["valid"] & splits["test"]
    )
    groups = {name for p in a.products for name in p.options}
    assert {"size", "color", "flavor", "count"} <= groups
    assert any(len(p.pricing) == 2 for p in a.products) and any(p.reviews for p in a.products)
    for goal in a.goals[:50]:
        assert "price lower than" in goal.instruction and goal.attributes


def test_real_small_set_loads_processed_form():
    data = shared_path("webshop", "small")
    cat = catalog_mod.load_real(data)
    assert len(cat.products) == 1000 and len(cat.goals) > 2000
    assert catalog_mod.categories(cat.goals) == ["beauty", "electronics", "fashion", "garden", "grocery"]
    first = json.loads(next(open(next(data.glob("*.jsonl")))))
    assert cat.documents()[0]["contents"] == first["contents"]  # the engine's own index text
    again = catalog_mod.load_real(data)
    assert [g.goal_id for g in again.split("test")] == [g.goal_id for g in cat.split("test")]


def write_raw_dataset(root: Path, human: bool) -> Path:
    products = [
        {
            "asin": f"B0TEST{i:04d}",
            "name": f"Acme Steel Water Bottle {i}",
            "full_description": "Keeps drinks cold.",
            "pricing": "$12.99 - $15.99" if i % 2 else "$9.50",
            "small_description": ["Double wall steel"],
            "customization_options": {
                "Color": [{"value": "Navy/Blue"}, {"value": "Black"}],
                "Size": [{"value": "32 oz"}],
            },
            "category": "garden",
            "query": "water bottle",
            "product_category": "Home › Kitchen › Bottles",
            "average_rating": 4.5,
            "images": [],
        }
        for i in range(30)
    ] + [{"asin": "nan", "name": "broken"}]
    (root / "items_shuffle_test.json").write_text(json.dumps(products))
    ins = {
        p["asin"]: {
            "attributes": ["bpa free", "leak proof"],
            "instruction": "i need a leak proof water bottle",
            "instruction_attributes": ["leak proof"],
        }
        for p in products[:-1]
    }
    (root / "items_ins_v2_test.json").write_text(json.dumps(ins))
    if human:
        hum = {
            p["asin"]: [
                {
                    "instruction": "i want a bpa free bottle in black.",
                    "instruction_attributes": ["bpa free"],
                    "instruction_options": ["black"],
                }
            ]
            for p in products[:20]
        }
        (root / "items_human_ins.json").write_text(json.dumps(hum))
    return root


@pytest.mark.parametrize("human", [True, False])
def test_raw_webshop_files_and_goal_construction(tmp_path, human):
    cat = catalog_mod.load_real(write_raw_dataset(tmp_path, human))
    assert len(cat.products) == 30  # the 'nan' asin is skipped
    p = cat.by_asin["B0TEST0001"]
    assert p.pricing == [12.99, 15.99] and 12.99 <= p.price <= 15.99 and p.price_text == "$12.99 to $15.99"
    assert p.options == {"color": ["navy | blue", "black"], "size": ["32 oz"]}
    assert p.attributes == ["bpa free", "leak proof"]
    if human:
        assert len(cat.goals) == 20 and all(
            g.instruction.startswith("i want a bpa free bottle in black, and price") for g in cat.goals
        )
        assert cat.goals[0].goal_options == ["black"]
    else:
        assert len(cat.goals) == 60  # one goal per option combination: 2 colours x 1 size
        assert any("with color: navy | blue, and size: 32 oz, and price lower than" in g.instruction for g in cat.goals)
    for g in cat.goals:  # the bound: the larger of two of the next four multiples of $10
        price = cat.by_asin[g.asin].price
        assert g.price_upper in [10.0 * k for k in range(1, 100) if 10.0 * k > price][1:4]


def test_corrupt_and_missing_data_say_what_is_wrong(tmp_path):
    with pytest.raises(catalog_mod.CatalogError, match="No WebShop products"):
        catalog_mod.load_real(tmp_path)
    (tmp_path / "items_shuffle.json").write_text("[{")
    with pytest.raises(catalog_mod.CatalogError, match="items_shuffle.json: not valid JSON"):
        catalog_mod.load_real(tmp_path)
    with pytest.raises(catalog_mod.CatalogError, match="not a directory"):
        catalog_mod.load_real(tmp_path / "nope")


# ---------------------------------------------------------------------------- env
def test_env_contract_and_text_observation(env):
    check_env(env, skip_render_check=True)
    obs, info = env.reset(options={"task_index": 0})
    assert obs.startswith("Instruction: [SEP] ") and obs.endswith("[SEP] Search")
    assert info["admissible_actions"] == [SEARCH_ACTION]
    assert info["task_type"] in ("beauty", "electronics", "fashion", "garden", "grocery")
    goal = get_shop().catalog.goal_by_id[info["task_id"]]
    obs, reward, terminated, _, info = env.step(f"search[{goal.query}]")
    assert "Page 1 (Total results: " in obs and not terminated and reward == 0.0
    assert info["admissible_actions"][:2] == ["click[back to search]", "click[next >]"]
    assert len([a for a in info["admissible_actions"] if a.startswith("click[e")]) == 10


def test_oracle_buys_the_goal_and_scores_one(env):
    for index in range(0, 500, 50):
        reward, terminated, info = play_oracle(env, index)
        assert terminated and reward == 1.0 and info["won"] and info["score"] == 1.0


def test_wrong_product_scores_less_than_one(env):
    env.reset(options={"task_index": 3})
    shop = get_shop()
    goal = shop.catalog.goal_by_id[env.unwrapped.current_task_id]
    env.step(f"search[{goal.query}]")
    other = next(a for a in shop.search_engine.search(goal.query) if a != goal.asin)
    env.step(f"click[{other}]")
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert terminated and 0.0 <= reward < 1.0 and not info["won"]


def test_bad_actions_change_nothing(env):
    obs0, _ = env.reset(options={"task_index": 1})
    for bad, why in [
        ("buy it", "is not an action"),
        ("click[buy now]", "nothing called 'buy now'"),
        ("search[]", "needs keywords"),
        ("search[" + "x" * 600 + "]", "keep it under"),
    ]:
        obs, reward, terminated, _, info = env.step(bad)
        assert why in obs and not info["action_valid"] and not terminated and reward == 0.0
        assert obs.endswith(obs0)  # the same page follows the reason
    env.step("search[shoes]")
    obs, *_, info = env.step("search[shoes]")
    assert "no search bar on this page" in obs and not info["action_valid"]
    obs, *_, info = env.step("click[Back to Search]")  # any case
    assert info["action_valid"] and info["admissible_actions"] == [SEARCH_ACTION]


def test_html_mode_and_escaping():
    e = WebShopEnv(split="valid", observation_mode="html")
    obs, _ = e.reset(options={"task_index": 0})
    assert obs.lstrip().startswith("<!DOCTYPE html>") and 'name="q"' in obs
    assert html_to_text(obs).startswith("Instruction:")
    shop = e.client.app.extensions["webshop"]
    session = shop.session(e.session_id)
    session.goal.instruction, saved = "<script>alert(1)</script> & co", session.goal.instruction
    try:
        state = e.client.request("GET", f"/api/sessions/{e.session_id}")[1]
        assert "<script>alert(1)</script>" not in state["html"] and "&lt;script&gt;" in state["html"]
    finally:
        session.goal.instruction = saved
    e.close()


def test_sessions_are_isolated_across_envs_and_threads():
    envs = [WebShopEnv(split="test") for _ in range(4)]
    for i, e in enumerate(envs):
        e.reset(options={"task_index": i})
    plans = [e.unwrapped.oracle_actions() for e in envs]
    rewards = [None] * 4

    def run(i):
        for action in plans[i]:
            _, rewards[i], *_ = envs[i].step(action)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rewards == [1.0] * 4
    assert len({e.session_id for e in envs}) == 4
    for e in envs:
        e.close()


def test_real_small_set_env_oracle_wins():
    data = shared_path("webshop", "small")
    e = gym.make("sdar_envs:sdar/WebShop-v0", data_dir=str(data), split="test")
    wins = 0
    for index in range(0, 100, 10):
        e.reset(options={"task_index": index})
        try:
            plan = e.unwrapped.oracle_actions()
        except LookupError:  # a few real titles are too generic to find themselves in the top 50
            continue
        for action in plan:
            _, reward, terminated, *_ = e.step(action)
        wins += reward == 1.0
    assert wins >= 9
    e.close()


# ---------------------------------------------------------------------------- HTTP server
@pytest.fixture(scope="module")
def server_url():
    with BackgroundServer(create_app(), threads=8) as server:
        yield server.url


def test_env_over_http_matches_in_process(server_url, env):
    remote = gym.make("sdar_envs:sdar/WebShop-v0", base_url=server_url, split="test")
    obs_remote, _ = remote.reset(options={"task_index": 7})
    obs_local, _ = env.reset(options={"task_index": 7})
    assert obs_remote == obs_local
    for action in env.unwrapped.oracle_actions():
        a = remote.step(action)
        b = env.step(action)
        assert a[0] == b[0] and a[1] == b[1]
    assert a[1] == 1.0
    remote.close()


def test_sessions_are_isolated_and_never_evicted_while_active(tmp_path):
    """Server-issued ids; a live id is never restarted; a full shop refuses new sessions, not active ones;
    requests for another host name are not answered."""
    import requests

    from sdar_envs.serving import BackgroundServer
    from sdar_envs.webshop.server import create_app, get_shop
    from sdar_envs.webshop.site import Shop

    base = get_shop()
    shop = Shop(base.catalog, base.search_engine, max_sessions=3)
    with BackgroundServer(create_app(shop)) as server:
        s = requests.Session()
        ids = [s.post(server.url + "/api/sessions", json={"split": "test"}).json()["session_id"] for _ in range(3)]
        assert len(set(ids)) == 3 and all(len(i) >= 24 for i in ids)  # unguessable: 144 random bits each
        goal = s.get(f"{server.url}/api/sessions/{ids[0]}").json()["instruction"]
        r = s.post(server.url + "/api/sessions", json={"session_id": ids[0]})  # taking over A's session
        assert r.status_code == 409 and s.get(f"{server.url}/api/sessions/{ids[0]}").json()["instruction"] == goal
        r = s.post(server.url + "/api/sessions", json={"split": "test"})  # full: the active ones stay
        assert r.status_code == 503 and "sessions are live" in r.json()["error"]
        assert all(s.get(f"{server.url}/api/sessions/{i}").status_code == 200 for i in ids)
        shop.idle_s = 0.0  # now the idle-longest makes room
        assert s.post(server.url + "/api/sessions", json={"split": "test"}).status_code == 200
        assert s.get(f"{server.url}/api/sessions/{ids[0]}").status_code == 404
        r = s.get(f"{server.url}/api/sessions/{ids[1]}", headers={"Host": "attacker.example:80"})
        assert r.status_code == 421  # a DNS name rebound to 127.0.0.1 gets nothing
    chosen = Shop(base.catalog, base.search_engine, client_session_ids=True)
    assert chosen.start(session_id="1").session_id == "1"  # only where the server was started so


def test_bad_requests_get_4xx_not_500(server_url):
    import requests

    s = requests.Session()
    cases = [
        ("GET", "/s/nosuchsession", None, 404),
        ("POST", "/s/nosuchsession/click", None, 404),
        ("GET", "/api/sessions/nosuch", None, 404),
        ("POST", "/api/sessions", "not json", 400),
        ("POST", "/api/sessions", {"goal_id": "nope"}, 404),
        ("POST", "/api/sessions", {"goal_id": 5}, 400),
        ("POST", "/api/sessions", {"session_id": "bad id!"}, 409),  # ids are the server's to issue
        ("GET", "/api/tasks?split=dev", None, 400),
        ("GET", "/no/such/page", None, 404),
        ("DELETE", "/api/sessions/nosuch", None, 404),
        ("PUT", "/api/sessions", None, 405),
    ]
    for method, path, body, status in cases:
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
        r = s.request(method, server_url + path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text[:200])
    sid = s.post(server_url + "/api/sessions", json={"split": "test"}).json()["session_id"]
    r = s.post(f"{server_url}/api/sessions/{sid}/act", json={"action": 3})
    assert r.status_code == 400 and "'action'" in r.json()["error"]
    act = f"{server_url}/api/sessions/{sid}/act"
    for body, message in [("[" * 30_000 + "]" * 30_000, "nested too deeply"),
                          ('{"action": "search[\\udc80 shoes]"}', "'action' is not valid text: a lone surrogate"),
                          ('{"action": ' + "9" * 5000 + "}", "not valid JSON")]:
        r = s.post(act, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and message in r.json()["error"], (message, r.status_code, r.text[:200])
    r = s.post(f"{server_url}/api/sessions/{sid}/act", json={"action": "click[nothing]"})
    assert r.status_code == 400 and "nothing called" in r.json()["error"] and r.json()["page"] == "search"
    r = s.post(f"{server_url}/s/{sid}/click", data={"value": "<b>x</b>"})
    assert r.status_code == 400 and "&lt;b&gt;x&lt;/b&gt;" in r.text
    r = s.post(f"{server_url}/s/{sid}/search", data={"q": "green tea"})
    assert r.status_code == 200 and "Total results" in r.text  # POST -> 303 -> the results page
    assert f'action="/s/{sid}/click"' in r.text  # the page's buttons post back to this session
    assert s.get(server_url + "/healthz").json()["ok"]


def test_many_concurrent_http_sessions(server_url):
    import requests

    tasks = requests.get(server_url + "/api/tasks?split=test").json()["tasks"]
    errors, done = [], []

    def shopper(i):
        s = requests.Session()
        try:
            state = s.post(server_url + "/api/sessions", json={"goal_id": tasks[i]["id"]}).json()
            query = state["instruction"].split(" with ")[0]
            for action in [f"search[{query}]", "click[next >]", "click[< prev]"]:
                r = s.post(f"{server_url}/api/sessions/{state['session_id']}/act", json={"action": action})
                assert r.status_code == 200, r.text[:200]
                assert r.json()["instruction"] == tasks[i]["instruction"]
            done.append(i)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=shopper, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(done) == 24


def test_privileged_skills_use_the_webshop_bank_by_category():
    from sdar_envs.wrappers import PrivilegedSkills

    env = PrivilegedSkills(gym.make("sdar_envs:sdar/WebShop-v0", split="test"))
    _, info = env.reset(options={"task_index": 0})
    category = info["task_type"]
    assert any(i.startswith(("beauty-", "elec-", "fashion-", "home-", "grocery-")) for i in info["skills"]["ids"])
    assert "ws-read-goal" in info["skills"]["ids"] and category in ("beauty", "electronics", "fashion", "garden",
                                                                   "grocery")
    env.close()


def test_documented_information_keys_are_the_returned_keys():
    from sdar_envs import INFO_KEYS

    doc = WebShopEnv.__doc__.split("## Information")[1].split("##")[0]
    assert all(f"`{key}`" in doc for key in INFO_KEYS)


def test_expert_step_buys_the_goal_with_a_score_of_one():
    env = gym.make("sdar/WebShop-v0", split="train")
    for index in range(0, 120, 6):
        env.reset(options={"task_index": index})
        first = env.unwrapped.expert_step()
        assert first.action.startswith("search[") and "price lower than" not in first.action  # the instruction's words
        while True:
            expert = env.unwrapped.expert_step()
            _, reward, terminated, truncated, info = env.step(expert.action)
            assert info["action_valid"], expert
            if terminated or truncated:
                break
        assert reward == 1.0 and info["won"]
    env.close()


def test_expert_step_opens_the_first_result_that_meets_the_goal():
    """Not only the goal product: any result WebShop's score rates 1.0, so the choice is one the page shows early."""
    env = gym.make("sdar/WebShop-v0", split="valid")
    shop = env.unwrapped.client.app.extensions["webshop"]
    positions, other_products = [], 0
    for index in range(0, 300, 10):
        env.reset(options={"task_index": index})
        env.step(env.unwrapped.expert_step().action)  # the key-word search
        session = shop.session(env.unwrapped.session_id)
        shown = shop.page_results(session)
        opened = env.unwrapped.expert_step().action
        asin = opened[len("click[") : -1].upper()
        assert asin in shown, opened
        positions.append(shown.index(asin))
        other_products += asin != session.goal.asin
        _, _, _, _, info = env.step(opened)
        while not info["won"] and info["admissible_actions"]:
            expert = env.unwrapped.expert_step()
            if expert.action != "click[buy now]":  # an option, named as the instruction writes it
                value = expert.action[len("click[") : -1]
                group = next(g for g, values in shop.product(session.asin).options.items() if value in values)
                assert f"{group}: {value}" in expert.thought and f"{group}: {value}" in session.goal.instruction
            _, _, _, _, info = env.step(expert.action)
        assert info["won"], session.goal.instruction
    assert sum(p == 0 for p in positions) >= len(positions) / 2  # mostly the top result (64 % of 100 goals)
    assert other_products >= len(positions) / 2
    env.close()


def test_a_human_goals_list_in_the_data_folder_is_said_to_be_unused_once(tmp_path, caplog):
    import logging

    root = write_raw_dataset(tmp_path, human=False)
    (root / "human_goals.json").write_text(json.dumps(["i need a black bpa free bottle"]))
    with caplog.at_level(logging.WARNING, logger="sdar_envs.webshop.catalog"):
        catalog_mod.load_real(root)
        catalog_mod.load_real(root)
    notes = [r.getMessage() for r in caplog.records if "human_goals.json" in r.getMessage()]
    assert len(notes) == 1 and "is not used" in notes[0] and "synthetic goals" in notes[0]
