"""sdar/SearchQA-v0: the retriever, the server, the env, and the loaders on real data."""

from __future__ import annotations

import json
import threading

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("pyserini", reason="Search-QA's extras are not installed (pip install 'sdar[searchqa]')")

from sdar_envs.searchqa.data import QAFormatError, load_corpus, load_questions  # noqa: E402
from sdar_envs.searchqa.env import SearchQAEnv  # noqa: E402
from sdar_envs.searchqa.generator import embedded_set  # noqa: E402
from sdar_envs.searchqa.protocol import REMINDER  # noqa: E402
from sdar_envs.searchqa.retriever import (  # noqa: E402
    Bm25Retriever,
    format_information,
    get_retriever,  # noqa: E402
)
from sdar_envs.searchqa.server import create_app  # noqa: E402
from sdar_envs.serving import BackgroundServer  # noqa: E402
from tests.conftest import shared_path  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = SearchQAEnv(split="test")
    yield e
    e.close()


def title_of(hop: str) -> str:
    return f'"{hop}"'


def test_retrieval_finds_the_gold_passage_for_single_hop_questions():
    retriever = get_retriever()
    questions = [q for q in embedded_set().questions if q["data_source"] == "single_hop"][:300]
    results = retriever.search([q["question"] for q in questions], 3)
    found = sum(title_of(q["hops"][0]) in [p.title for p in ps] for q, ps in zip(questions, results, strict=True))
    assert found / len(questions) >= 0.95


def test_information_block_is_search_r1_style():
    passages = get_retriever().search(["Who founded the company"], 3)[0]
    text = format_information(passages)
    assert text.startswith("<information>Doc 1(Title: \"") and text.endswith("</information>")
    assert "\nDoc 2(Title: " in text and "\nDoc 3(Title: " in text


def test_env_contract_and_episode(env):
    check_env(env, skip_render_check=True)
    obs, info = env.reset(options={"task_index": 0})
    assert obs == info["task"] and info["admissible_actions"] == [] and info["task_type"] in (
        "single_hop", "entity_attribute", "multi_hop", "comparison")
    obs, reward, terminated, _, info = env.step("I am not sure")
    assert obs == REMINDER and not info["action_valid"] and not terminated and reward == 0.0
    obs, reward, terminated, _, info = env.step("<think>look it up</think> <search> something </search>")
    assert obs.startswith("<information>") and info["action_valid"] and not terminated
    obs, *_, info = env.step(f"<search>{'x' * 1200}</search>")
    assert "keep it under" in obs and not info["action_valid"]
    obs, reward, terminated, _, info = env.step("answer[definitely wrong]")
    assert terminated and reward == 0.0 and not info["won"] and info["score"] == 0.0


def test_oracle_wins_every_kind(env):
    kinds = {}
    for index in range(0, env.num_tasks, 7):
        env.reset(options={"task_index": index})
        for action in env.oracle_actions():
            obs, reward, terminated, _, info = env.step(action)
        assert terminated and reward == 1.0 and info["won"] and info["score"] == 1.0, obs
        kinds[info["task_type"]] = kinds.get(info["task_type"], 0) + 1
    assert set(kinds) == {"single_hop", "entity_attribute", "multi_hop", "comparison"}


def test_question_searcher_answers_from_the_gold_passage(env):
    """Search with the question, answer with the gold answer only if the passages contain it."""
    wins = tried = 0
    for index in range(0, env.num_tasks, 5):
        _, info = env.reset(options={"task_index": index})
        if info["task_type"] != "single_hop":
            continue
        obs, *_ = env.step(f"<search> {info['task']} </search>")
        gold = env.unwrapped._question.golden_answers[0]
        _, reward, *_ = env.step(f"<answer> {gold if gold in obs else 'unknown'} </answer>")
        wins += reward == 1.0
        tried += 1
    assert wins / tried >= 0.95


def test_max_turns_and_partial_credit():
    env = gym.make("sdar_envs:sdar/SearchQA-v0", split="valid", max_episode_steps=2)
    env.reset(options={"task_index": 0})
    env.step("<search>a</search>")
    *_, truncated, _ = env.step("<search>b</search>")
    assert truncated
    env.reset(options={"task_index": 0})
    gold = env.unwrapped._question.golden_answers[0]
    _, reward, terminated, _, info = env.step(f"<answer>{gold} and more</answer>")
    assert terminated and reward == 0.0 and 0.0 < info["score"] < 1.0
    env.close()


# ---------------------------------------------------------------------------- real data
def test_loaders_on_search_r1_parquet_and_flashrag_jsonl():
    parquet = load_questions(shared_path("searchqa", "nq_search_test_100.parquet"))
    assert len(parquet) == 100 and {q.data_source for q in parquet} == {"nq"}
    assert parquet[0].question.startswith("who got the first nobel prize") and parquet[0].golden_answers
    jsonl = load_questions(shared_path("searchqa", "nq_test_17.jsonl"))
    assert len(jsonl) == 17 and jsonl[0].data_source == "nq" and jsonl[0].golden_answers == ("Wilhelm Conrad Röntgen",)


def test_retriever_on_real_wiki18_sample():
    path = shared_path("searchqa", "wiki18_sample_1000.jsonl")
    docs = load_corpus(path)
    retriever = Bm25Retriever.from_corpus(path)
    assert len(retriever.searcher) == len(docs) == 1000
    hits = 0
    for doc in docs[:100]:
        title, _, text = doc["contents"].partition("\n")
        query = f"{title.strip(chr(34))} {' '.join(text.split()[:12])}"
        top = retriever.search([query], 3)[0]
        hits += top[0].id == doc["id"]
        assert top[0].contents in {d["contents"] for d in docs}
    assert hits >= 95


def test_env_on_real_questions_needs_and_uses_a_corpus():
    questions = shared_path("searchqa", "nq_test_17.jsonl")
    corpus = shared_path("searchqa", "wiki18_sample_1000.jsonl")
    with pytest.raises(ValueError, match="need their corpus"):
        SearchQAEnv(questions=str(questions))
    with pytest.raises(ValueError, match="at most one of"):
        SearchQAEnv(questions=str(questions), corpus=str(corpus), retriever_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="--dense-index"):
        SearchQAEnv(retriever_url="http://127.0.0.1:9", dense_index="x", encoder="y")
    env = gym.make("sdar_envs:sdar/SearchQA-v0", questions=str(questions), corpus=str(corpus), split="test")
    obs, info = env.reset(options={"task_index": 0})
    assert info["task_type"] == "nq" and obs == "who got the first nobel prize in physics"
    obs, *_ = env.step("<search> nobel prize physics </search>")
    assert obs.count("Doc ") == 3
    _, reward, terminated, _, info = env.step("<answer> Wilhelm Conrad Röntgen </answer>")
    assert terminated and reward == 1.0 and info["won"]
    env.close()


def test_prebuilt_index_by_name(tmp_path, monkeypatch):
    """`prebuilt_index=` takes Pyserini's cached index, or says how to get it (no download here)."""
    import shutil

    from sdar_envs import lucene

    lucene.start_jvm()  # before anything of pyserini's that loads Java classes
    import pyserini.util

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "pyserini"))
    with pytest.raises(FileNotFoundError, match="not one of Pyserini's prebuilt sparse indexes; did you mean"):
        lucene.prebuilt_index_dir("wikipedia-dpr-100")

    def offline(name, **kwargs):
        raise ValueError("Unable to download prebuilt index at any known URLs.")

    monkeypatch.setattr(pyserini.util, "download_prebuilt_index", offline)
    with pytest.raises(FileNotFoundError, match="not in the local Pyserini cache .* could not be downloaded"):
        SearchQAEnv(questions=str(shared_path("searchqa", "nq_test_17.jsonl")), prebuilt_index="wikipedia-dpr-100w")
    # the index in Pyserini's cache: a small one standing in for wiki-18, where Pyserini keeps it
    built = Bm25Retriever.from_corpus(shared_path("searchqa", "wiki18_sample_1000.jsonl")).searcher.index_dir
    shutil.copytree(built, lucene.prebuilt_cache_path("wikipedia-dpr-100w"))
    env = gym.make("sdar/SearchQA-v0", questions=str(shared_path("searchqa", "nq_test_17.jsonl")),
                   prebuilt_index="wikipedia-dpr-100w")
    env.reset(options={"task_index": 0})
    obs, *_ = env.step("<search> nobel prize physics </search>")
    assert obs.count("Doc ") == 3
    env.close()


def test_bad_question_files_say_what_is_wrong(tmp_path):
    bad = tmp_path / "nq_bad.jsonl"
    bad.write_text('{"question": "q", "golden_answers": []}\n')
    with pytest.raises(QAFormatError, match="'golden_answers' must be a non-empty string or list"):
        load_questions(bad)
    bad.write_text("{oops\n")
    with pytest.raises(QAFormatError, match="line 1: not valid JSON"):
        load_questions(bad)
    (tmp_path / "q.csv").write_text("x")
    with pytest.raises(QAFormatError, match="expected a .parquet"):
        load_questions(tmp_path / "q.csv")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(QAFormatError, match="not a readable parquet"):
        load_questions(tmp_path / "broken.parquet")
    with pytest.raises(QAFormatError, match="does not exist"):
        load_questions(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------------- server
@pytest.fixture(scope="module")
def server_url():
    with BackgroundServer(create_app(get_retriever()), threads=8) as server:
        yield server.url


def test_server_accepts_both_request_shapes(server_url):
    import requests

    query = embedded_set().questions[0]["question"]
    r = requests.post(server_url + "/retrieve", json={"queries": [query, "Company"], "topk": 2, "return_scores": True})
    assert r.status_code == 200
    rows = r.json()["result"]
    assert len(rows) == 2 and len(rows[0]) == 2 and set(rows[0][0]) == {"document", "score"}
    assert set(rows[0][0]["document"]) == {"id", "contents"}
    r = requests.post(server_url + "/retrieve", json={"query": query})
    assert r.status_code == 200 and len(r.json()["result"]) == 1 and len(r.json()["result"][0]) == 3
    assert set(r.json()["result"][0][0]) == {"id", "contents"}
    assert r.json()["result"][0][0]["contents"] == rows[0][0]["document"]["contents"]


def test_server_rejects_bad_bodies_with_4xx(server_url):
    import requests

    for kwargs in [{"data": "not json"}, {"json": {"queries": "x"}}, {"json": {"query": "x", "topk": -1}},
                   {"json": [1, 2]}, {"json": {}}]:
        r = requests.post(server_url + "/retrieve", **kwargs)
        assert r.status_code == 400 and "bad /retrieve request" in r.json()["error"], kwargs
    assert requests.get(server_url + "/retrieve").status_code == 405
    assert requests.get(server_url + "/nope").status_code == 404
    assert requests.get(server_url + "/healthz").json()["documents"] == len(embedded_set().passages)


def test_hostile_bodies_get_a_400_that_says_what_is_wrong(server_url):
    import requests

    deep = "[" * 30_000 + "]" * 30_000
    cjk = "".join(chr(0x4E00 + i) for i in range(1100))  # 1,100 distinct characters, under the length limit
    cases = [
        ({"data": deep, "headers": {"Content-Type": "application/json"}}, "nested too deeply"),
        ({"data": '{"query": "\\ud800 city"}', "headers": {"Content-Type": "application/json"}},
         "query 0 is not valid text: a lone surrogate"),
        ({"data": '{"queries": ["fine", "\\udc80 x"]}'}, "query 1 is not valid text"),
        ({"data": '{"query": "x", "topk": ' + "9" * 5000 + "}"}, "not valid JSON"),
        ({"json": {"query": cjk}}, "more distinct terms than BM25 takes"),
    ]
    for kwargs, message in cases:
        r = requests.post(server_url + "/retrieve", timeout=60, **kwargs)
        assert r.status_code == 400 and message in r.json()["error"], (message, r.status_code, r.text[:200])


def test_one_clients_bad_queries_fail_no_other_clients_request(server_url):
    """Good and bad clients at once: the batcher runs their queries together, and only the bad ones fail."""
    import threading
    import time

    import requests

    good = [q["question"] for q in embedded_set().questions[:8]]
    cjk = "".join(chr(0x4E00 + i) for i in range(1100))
    failures, answered, stop = [], [0], time.monotonic() + 6

    def good_client(i):
        with requests.Session() as s:
            while time.monotonic() < stop:
                r = s.post(server_url + "/retrieve", json={"query": good[i % len(good)]}, timeout=60)
                if r.status_code != 200:
                    failures.append(r.status_code)
                answered[0] += 1

    def bad_client():
        with requests.Session() as s:
            while time.monotonic() < stop:
                assert s.post(server_url + "/retrieve", json={"queries": [cjk]}, timeout=60).status_code == 400

    threads = [threading.Thread(target=good_client, args=(i,)) for i in range(6)]
    threads.append(threading.Thread(target=bad_client))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answered[0] > 20 and failures == []


def test_a_heavy_client_is_bounded_and_does_not_starve_the_others(server_url):
    """Good clients' p99 latency while a client sends the largest requests allowed stays within 5x of alone's."""
    import threading
    import time

    import requests

    from sdar_envs.searchqa.server import MAX_PASSAGES, MAX_REQUEST_CHARS

    too_many = {"queries": ["apple"] * 512, "topk": 100}
    assert requests.post(server_url + "/retrieve", json=too_many, timeout=60).status_code == 413
    too_long = {"queries": ["x" * 2000] * 40}
    r = requests.post(server_url + "/retrieve", json=too_long, timeout=60)
    assert r.status_code == 413 and str(MAX_REQUEST_CHARS) in r.json()["error"]
    good = [q["question"] for q in embedded_set().questions[:8]]

    def p99(seconds: float, heavy: bool) -> float:
        latencies, stop = [], time.monotonic() + seconds

        def good_client(i):
            with requests.Session() as s:
                while time.monotonic() < stop:
                    start = time.perf_counter()
                    assert s.post(server_url + "/retrieve", json={"query": good[i]}, timeout=60).status_code == 200
                    latencies.append(time.perf_counter() - start)

        def heavy_client():
            body = {"queries": [f"{good[i % 8]} history of the city {i}" for i in range(MAX_PASSAGES // 8)], "topk": 8}
            with requests.Session() as s:
                while time.monotonic() < stop:
                    assert s.post(server_url + "/retrieve", json=body, timeout=60).status_code == 200

        threads = [threading.Thread(target=good_client, args=(i,)) for i in range(8)]
        threads += [threading.Thread(target=heavy_client)] if heavy else []
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        latencies.sort()
        return latencies[int(0.99 * (len(latencies) - 1))]

    alone, beside_heavy = p99(3, heavy=False), p99(4, heavy=True)
    print(f"good clients p99: alone {alone * 1000:.0f} ms, beside a heavy client {beside_heavy * 1000:.0f} ms")
    # 5x, with alone's p99 taken as at least 0.25 s: on a loaded 2-core machine it swings between 0.1 and 0.35 s
    # by itself (before the bound and the shared batches a heavy client took it from ~36 ms to ~4.5 s)
    assert beside_heavy <= 5 * max(alone, 0.25), (alone, beside_heavy)


def test_concurrent_clients_are_batched_and_get_their_own_results(server_url):
    import requests

    questions = [q for q in embedded_set().questions if q["data_source"] == "single_hop"][:64]
    results, errors = {}, []

    def client(i):
        try:
            r = requests.post(server_url + "/retrieve", json={"query": questions[i]["question"], "topk": 3})
            results[i] = [d["contents"].split("\n")[0] for d in r.json()["result"][0]]
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    before = requests.get(server_url + "/healthz").json()["batches"]
    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = requests.get(server_url + "/healthz").json()["batches"]
    assert not errors and len(results) == 64
    assert after - before < 64  # queries that arrived together shared a batch
    found = sum(f'"{q["hops"][0]}"' in results[i] for i, q in enumerate(questions))
    assert found >= 60


def test_env_through_the_server_matches_in_process(server_url, env):
    remote = gym.make("sdar_envs:sdar/SearchQA-v0", split="test", retriever_url=server_url)
    for index in (0, 3):
        remote.reset(options={"task_index": index})
        env.reset(options={"task_index": index})
        for action in env.oracle_actions():
            a, b = remote.step(action), env.step(action)
            assert a[0] == b[0] and a[1] == b[1]
    remote.close()


def test_dense_retriever_over_a_faiss_index(tmp_path):
    """A tiny random BERT encodes 200 passages into a Faiss index; each passage finds itself."""
    faiss = pytest.importorskip("faiss", reason="dense retrieval needs faiss-cpu (pip install 'sdar[dense]')")
    texts = get_retriever()  # starts the JVM our way before anything imports pyserini's Java classes
    import numpy as np
    from pyserini.encode import AutoQueryEncoder
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from sdar_envs.searchqa.retriever import DenseRetriever

    passages = embedded_set().passages[:200]
    words = sorted({w for p in passages for w in p["contents"].lower().replace("\n", " ").split()})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    encoder_dir = tmp_path / "encoder"
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(encoder_dir)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    BertModel(config).save_pretrained(encoder_dir)
    encoder = AutoQueryEncoder(str(encoder_dir), pooling="mean", l2_norm=True)
    vectors = np.stack([encoder.encode(p["contents"]) for p in passages]).astype("float32")
    index_dir = tmp_path / "dense"
    index_dir.mkdir()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, str(index_dir / "index"))
    (index_dir / "docid").write_text("\n".join(p["id"] for p in passages) + "\n")

    dense = DenseRetriever(index_dir, encoder_dir, texts)
    assert len(dense) == 200
    results = dense.search([p["contents"] for p in passages[:20]], 3)
    assert [r[0].id for r in results] == [p["id"] for p in passages[:20]]
    assert results[0][0].contents == passages[0]["contents"] and results[0][0].score == pytest.approx(1, abs=1e-3)
    env = gym.make("sdar_envs:sdar/SearchQA-v0", split="test", dense_index=str(index_dir), encoder=str(encoder_dir))
    env.reset(options={"task_index": 0})
    obs, *_, info = env.step(f"<search> {passages[5]['contents']} </search>")
    title = passages[5]["contents"].split("\n")[0]
    assert info["action_valid"] and obs.startswith(f"<information>Doc 1(Title: {title})")
    with pytest.raises(ValueError, match="needs both"):
        SearchQAEnv(dense_index=str(index_dir))
    with pytest.raises(FileNotFoundError, match="not a Pyserini Faiss index"):
        DenseRetriever(tmp_path, encoder_dir, texts)
    with pytest.raises(FileNotFoundError, match="not a local model folder"):
        DenseRetriever(index_dir, tmp_path / "nope", texts)


def test_exported_embedded_set_plays_through_the_real_data_path(tmp_path):
    from sdar_envs.searchqa.generator import main

    main(["--out", str(tmp_path)])
    env = gym.make("sdar_envs:sdar/SearchQA-v0", data_dir=str(tmp_path), corpus=str(tmp_path / "corpus.jsonl"),
                   split="valid")
    assert env.unwrapped.num_tasks == len(SearchQAEnv(split="valid").task_ids)
    env.reset(options={"task_index": 2})
    for action in env.unwrapped.oracle_actions():
        _, reward, terminated, *_ = env.step(action)
    assert terminated and reward == 1.0
    with pytest.raises(QAFormatError, match="no dev.parquet or dev.jsonl"):
        from sdar_envs.searchqa.data import load_split

        load_split(str(tmp_path), "dev")
    env.close()


def test_privileged_skills_map_data_sources_to_question_kinds():
    from sdar_envs.wrappers import PrivilegedSkills
    from skillbank import SkillBank

    env = PrivilegedSkills(gym.make("sdar_envs:sdar/SearchQA-v0", split="test"))
    for index in range(12):
        _, info = env.reset(options={"task_index": index})
        kind = info["task_type"]
        own = {"single_hop": "single-", "multi_hop": "multi-", "comparison": "cmp-", "entity_attribute": "attr-"}[kind]
        assert any(i.startswith(own) for i in info["skills"]["ids"]), (kind, info["skills"]["ids"])
    env.close()
    bank = SkillBank.load("searchqa")
    assert any(s.startswith("multi-") for s in bank.retrieve("hotpotqa", "x", strategy="keyword").ids)
    assert any(s.startswith("attr-") for s in bank.retrieve("popqa", "x", strategy="keyword").ids)


def test_shared_servers_example_runs(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(root / "examples" / "shared_servers.py"), "--envs", "2"],
                            capture_output=True, text=True, cwd=root, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("rewards [1.0, 1.0]") == 6, result.stdout


def test_a_jvm_started_by_someone_else_with_old_java_gets_a_clear_error():
    import os
    import shutil
    import subprocess
    import sys

    java = shutil.which("java")
    if java is None:
        pytest.skip("no system java to start an old JVM with")
    version = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    if '"17' not in version and '"11' not in version:
        pytest.skip(f"the system java is not an old one: {version.splitlines()[0]}")
    code = ("import jnius_config\nfrom jnius import autoclass\nautoclass('java.lang.String')\n"
            "from sdar_envs import lucene\nlucene.start_jvm()\n")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "Pyserini needs Java >= 21" in result.stderr


def test_documented_information_keys_are_the_returned_keys():
    from sdar_envs import INFO_KEYS

    doc = SearchQAEnv.__doc__.split("## Information")[1].split("##")[0]
    assert all(f"`{key}`" in doc for key in INFO_KEYS)


def play_expert(env, index):
    """The expert's episode on task `index`: (observations, actions, thoughts, last reward, last info)."""
    obs, info = env.reset(options={"task_index": index})
    observations, actions, thoughts = [obs], [], []
    while True:
        step = env.unwrapped.expert_step()
        actions.append(step.action)
        thoughts.append(step.thought)
        obs, reward, terminated, truncated, info = env.step(step.action)
        observations.append(obs)
        if terminated or truncated:
            return observations, actions, thoughts, reward, info


def test_expert_step_answers_every_kind_exactly_from_what_it_retrieved():
    from sdar_envs.searchqa.scoring import normalize_answer

    env = gym.make("sdar/SearchQA-v0", split="test")
    won = {}
    for index in range(0, env.unwrapped.num_tasks, 5):
        observations, actions, thoughts, reward, info = play_expert(env, index)
        question = env.unwrapped.questions[index]
        won.setdefault(info["task_type"], []).append(reward == 1.0)
        searches = [a for a in actions if a.startswith("<search>")]
        assert 1 <= len(searches) <= max(1, len(question.hops))
        answer = actions[-1].removeprefix("<answer> ").removesuffix(" </answer>")
        retrieved = " ".join(observations[1:-1])
        assert answer in retrieved  # as the passage writes it
        assert normalize_answer(answer) in {normalize_answer(a) for a in question.golden_answers}
    assert set(won) == {"single_hop", "entity_attribute", "multi_hop", "comparison"}
    assert all(all(v) for v in won.values())  # EM 1.0 on single- and multi-hop
    env.close()


def write_qa(tmp_path, questions, passages):
    qfile, cfile = tmp_path / "hotpotqa_dev.jsonl", tmp_path / "corpus.jsonl"
    qfile.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "golden_answers": a}) + "\n"
                             for i, (q, a) in enumerate(questions)))
    cfile.write_text("".join(json.dumps({"id": str(i), "contents": f'"{t}"\n{x}'}) + "\n"
                             for i, (t, x) in enumerate(passages)))
    return str(qfile), str(cfile)


PASSAGES = [("Jaws (film)", "Jaws is a 1975 thriller film directed by Steven Spielberg."),
            ("Steven Spielberg", "Steven Spielberg (born December 18, 1946) is an American filmmaker."),
            ("Great white shark", "The great white shark is a large mackerel shark of coastal waters."),
            ("Amity Island", "Amity Island is a fictional island in a novel by Peter Benchley.")]


def test_the_expert_follows_a_bridge_and_shows_nothing_it_cannot_ground(tmp_path):
    from sdar_envs.core import NoDemonstration

    qfile, cfile = write_qa(tmp_path, [("What year was the man who made Jaws born?", ["1946"]),
                                       ("Who is the mayor of Amity Island?", ["Larry Vaughn"])], PASSAGES)
    env = gym.make("sdar/SearchQA-v0", questions=qfile, corpus=cfile, split="train", topk=1)
    observations, actions, thoughts, reward, info = play_expert(env, 0)
    assert reward == 1.0 and actions[-1] == "<answer> 1946 </answer>"
    assert actions[:-1] == ["<search> What year was the man who made Jaws born? </search>",
                            "<search> Steven Spielberg </search>"]
    assert "Steven Spielberg" in observations[1]  # the bridge is named in what the first search showed
    assert "Steven Spielberg" in thoughts[-1] and "1946" in observations[2]  # the thought names the passage
    env.reset(options={"task_index": 1})
    with pytest.raises(NoDemonstration, match="q1"):  # no passage names the mayor
        env.unwrapped.expert_step()
    env.close()
