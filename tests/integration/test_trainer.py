"""The trainer end to end with a tiny random model: rollouts, failures, training, resume, DDP, CLIs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
import torch  # noqa: E402

from sdar_agent.config import ModelConfig  # noqa: E402
from sdar_agent.generation import HFGenerator, Sampling  # noqa: E402
from sdar_agent.logprobs import pack, response_logprobs  # noqa: E402
from sdar_agent.models import load_policy  # noqa: E402
from sdar_agent.prompts import template_for  # noqa: E402
from sdar_agent.rollout import Agent, RolloutSettings, collect  # noqa: E402
from sdar_agent.workers import EnvPool  # noqa: E402
from tests.helpers import LENIENT, run_train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("lenient_template")


def test_packed_logprobs_equal_unpadded_forward(tiny):
    model, tokenizer = tiny
    prompts, responses = [[5, 6, 7, 8], [9, 10]], [[11, 12], [13, 14, 15]]
    batch = pack(prompts, responses, tokenizer.pad_token_id)
    with torch.no_grad():
        logp = response_logprobs(model, batch).logp  # (2, 3)
        for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            ids = torch.tensor([p + r])
            full = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            expected = full[len(p) - 1 :].gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
            assert torch.allclose(logp[row, 3 - len(r) :], expected, atol=1e-5)
    assert batch["response_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]


def test_a_shared_prompt_prefix_runs_once_and_gives_the_same_logprobs(tiny):
    model, tokenizer = tiny
    torch.manual_seed(3)
    prefix = torch.randint(100, 4000, (40,)).tolist()
    prompts = [prefix + torch.randint(100, 4000, (n,)).tolist() for n in (3, 9, 1)]
    responses = [[11, 12], [13, 14, 15], [16]]
    shared = pack(prompts, responses, tokenizer.pad_token_id, share_prefix=True)
    assert shared["prefix_ids"].tolist() == prefix
    assert shared["input_ids"].shape == (3, 9 + 3) and shared["attention_mask"].shape == (3, 40 + 12)
    with torch.no_grad():
        whole = response_logprobs(model, pack(prompts, responses, tokenizer.pad_token_id)).logp
        mask = shared["response_mask"].bool()
        assert torch.allclose(response_logprobs(model, shared).logp[mask], whole[mask], atol=1e-5)
    with pytest.raises(ValueError, match="without gradient"):
        response_logprobs(model, shared)  # with gradient the prefix's keys and values would carry none
    # too short a shared prefix: rows are run whole; a prompt that is all prefix keeps its last token
    assert "prefix_ids" not in pack([prefix[:10] + [1], prefix[:10] + [2]], [[3], [4]], 0, share_prefix=True)
    assert len(pack([prefix, prefix + [5]], [[3], [4]], 0, share_prefix=True)["prefix_ids"]) == 39


def test_a_tasks_shared_prefix_runs_once_for_all_its_micro_batches(tiny, monkeypatch):
    import sdar_agent.logprobs as logprobs_module

    model, tokenizer = tiny
    torch.manual_seed(4)
    prefix = torch.randint(100, 4000, (30,)).tolist()
    prompts = [prefix + torch.randint(100, 4000, (n,)).tolist() for n in (3, 9, 1, 5, 2)]
    responses = [[11, 12], [13, 14, 15], [16], [17, 18], [19]]
    with torch.no_grad():
        kv = logprobs_module.prefix_cache(model, torch.tensor(prefix), 1)
        runs = []
        monkeypatch.setattr(logprobs_module, "prefix_cache", lambda *a: runs.append(a) or kv)
        whole = [response_logprobs(model, pack([p], [r], tokenizer.pad_token_id)).logp[0]
                 for p, r in zip(prompts, responses, strict=True)]
        for chunk in ([0, 1], [2, 3], [4]):  # micro-batches of 2, the last of one row
            batch = pack([prompts[i] for i in chunk], [responses[i] for i in chunk], tokenizer.pad_token_id,
                         share_prefix=True, prefix_length=len(prefix))
            assert batch["prefix_ids"].tolist() == prefix
            logp = response_logprobs(model, batch, prefix_kv=kv).logp
            for row, i in enumerate(chunk):
                n = len(responses[i])
                assert torch.allclose(logp[row, -n:], whole[i][-n:], atol=1e-5)
    assert not runs  # the given cache was repeated, never recomputed ...
    assert kv.get_seq_length() == len(prefix) and kv.layers[0].keys.shape[0] == 1  # ... and left untouched
    with pytest.raises(ValueError, match="share only"):
        pack([prefix[:20] + [1], prefix + [2]], [[3], [4]], 0, share_prefix=True, prefix_length=len(prefix))


def test_micro_batches_are_planned_to_run_each_turns_shared_tokens_once():
    from sdar_agent.logprobs import plan_micro_batches

    torch.manual_seed(6)
    task = torch.randint(100, 4000, (30,)).tolist()  # skills and task: every sample's first tokens
    turns = [torch.randint(100, 4000, (40,)).tolist() for _ in range(2)]  # what a turn's rollouts share
    # turn 0 and turn 1 rows interleaved, their tails' lengths such that sorting by length mixes the turns
    prompts = [task + turns[i % 2] + torch.randint(100, 4000, (3 + i,)).tolist() for i in range(6)]
    lengths = [4] * 6
    plan = plan_micro_batches(prompts, lengths, 3, cached=len(task))
    assert sorted(map(sorted, plan)) == [[0, 2, 4], [1, 3, 5]]  # a turn's rows together: its 40 tokens run once
    by_length = plan_micro_batches(prompts, lengths, 3)  # nothing cached: the same turns
    assert sorted(map(sorted, by_length)) == [[0, 2, 4], [1, 3, 5]]
    # identical prompts (a state reached twice) share a micro-batch; no plan leaves a row out or repeats one
    same = [task + [7] * 20, task + [8] * 20, task + [7] * 20, task + [8] * 20]
    assert sorted(map(sorted, plan_micro_batches(same, [5, 6, 7, 8], 2, cached=len(task)))) == [[0, 2], [1, 3]]
    for size in (1, 2, 4, 7):
        runs = plan_micro_batches(prompts, lengths, size)
        assert sorted(i for run in runs for i in run) == list(range(6)) and all(0 < len(r) <= size for r in runs)
    assert plan_micro_batches([], [], 4) == []
    with pytest.raises(ValueError, match="size=0"):
        plan_micro_batches(prompts, lengths, 0)


@pytest.mark.parametrize("workers", [False, True])
def test_rollout_on_alfworld_forms_groups(tiny, alfworld_games, workers):
    model, tokenizer = tiny
    pool = EnvPool("sdar/ALFWorld-v0", {"data_dir": str(alfworld_games)}, 4, max_turns=2, use_workers=workers)
    try:
        tasks = list(pool.call("task_ids"))[:2]
        agent = Agent(HFGenerator(model, tokenizer, 8), tokenizer, template_for("sdar/ALFWorld-v0"))
        settings = RolloutSettings(Sampling(8), 2, history_length=1, max_prompt_tokens=1024)
        ended: list[int] = []
        batch = collect(agent, pool, tasks, 2, settings, on_finished=ended.append)
    finally:
        pool.close()
    assert len(batch.episodes) == 4 and batch.dropped == 0
    assert len(ended) == 4 and ended[:2] == [0, 0] and sum(ended) == 4  # reset, each turn, the turn limit
    assert {e.group for e in batch.episodes} == {0, 1} and len({e.traj for e in batch.episodes}) == 4
    assert len(batch.samples) == 8  # 4 trajectories x 2 turns (a random model never wins)
    s = batch.samples[0]
    assert s.prompt_ids and 1 <= len(s.response_ids) <= 8 and s.task_id in tasks and s.task_type
    assert all(x.env_reward == 0.0 and not x.won for x in batch.samples)  # raw outcomes; scored later
    assert [x.step for x in batch.samples if x.traj == 0] == [0, 1]


@pytest.mark.parametrize("kind", ["raise", "die", "hang"])
def test_a_failing_env_is_restarted_and_its_trajectory_dropped(tiny, kind, caplog):
    import tests.integration.crash_env  # noqa: F401  registers test/Flaky-v0

    model, tokenizer = tiny
    pool = EnvPool("tests.integration.crash_env:test/Flaky-v0", {}, 2, max_turns=5, use_workers=True,
                   timeout_s=5.0 if kind == "hang" else 60.0)
    try:
        answer = tokenizer("<think>x</think><action>win</action>")["input_ids"]

        def generate(prompts, sampling):
            return [answer] * len(prompts)

        agent = Agent(generate, tokenizer, template_for("test/Flaky-v0"))
        settings = RolloutSettings(Sampling(8), max_turns=5, history_length=1, max_prompt_tokens=512)
        batch = collect(agent, pool, ["fine", kind], 1, settings)
        assert batch.dropped == 1 and [e.task_id for e in batch.episodes] == ["fine"] and batch.episodes[0].won
        assert "dropping its trajectory" in caplog.text
        again = collect(agent, pool, ["fine", "fine"], 1, settings)
        assert again.dropped == 0 and all(e.won for e in again.episodes)  # the restarted slot works
    finally:
        pool.close()


def test_two_training_steps(tmp_path, alfworld_games):
    rows, changed = run_train(tmp_path, alfworld_games, "two", "algo.kl_coef=0.05", "val_every=2", "val_tasks=2")
    assert [r["step"] for r in rows] == [1, 2] and changed
    last = rows[-1]
    for key in ("actor/pg_loss", "actor/kl", "actor/grad_norm", "episode/success_rate", "episode/valid_action_ratio",
                "perf/train_tokens_per_s", "perf/train_tflops", "perf/train_peak_share", "val/success_rate"):
        assert key in last and last[key] == last[key], key  # present and not NaN
    assert last["val/episodes"] == 2  # val_tasks games, one episode each
    assert last["perf/val_s"] > 0 and "perf/val_s" not in rows[0]  # timed where it ran, step 2 only
    run = tmp_path / "two"
    assert (run / "checkpoints" / "step_000002" / "sdar_state.json").is_file()
    assert (run / "final" / "config.json").is_file() and (run / "curves.png").is_file()


def test_lora_training_changes_only_the_adapter(tmp_path, alfworld_games):
    rows, changed = run_train(tmp_path, alfworld_games, "lora", "model.lora_rank=4", "model.train_layers=0",
                              "algo.kl_coef=0.05", "model.gradient_checkpointing=true", steps=1)
    assert changed and "actor/kl" in rows[0]
    assert (tmp_path / "lora" / "final" / "adapter_config.json").is_file()


def test_resume_reproduces_the_uninterrupted_run(tmp_path, alfworld_games):
    full, _ = run_train(tmp_path, alfworld_games, "full", steps=4)
    run_train(tmp_path, alfworld_games, "half", steps=2)
    resumed, _ = run_train(tmp_path, alfworld_games, "resumed", f"resume={tmp_path / 'half'}", steps=4)
    assert [r["step"] for r in resumed] == [3, 4]
    for a, b in zip(full[2:], resumed, strict=True):
        for key in ("actor/pg_loss", "actor/grad_norm", "episode/return", "rollout/response_tokens"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_bad_config_fails_before_loading_a_model():
    result = subprocess.run([sys.executable, "-m", "sdar_agent.train", "rollout.group_sise=4"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "unknown config key 'rollout.group_sise'" in result.stderr
    assert "Did you mean 'group_size'" in result.stderr


def launch_two_processes(config: str, out: Path, games: Path, *extra: str, check: bool = True
                         ) -> subprocess.CompletedProcess:
    """The trainer under `accelerate launch` with a shipped config, on 2 CPU processes (gloo) instead of GPUs.

    (Not `--cpu`: with it accelerate runs a single process whatever `--num_processes` says.)
    """
    args = ["model.name=tiny", "name=mp", f"output_dir={out}", "steps=2", "save_every=0", "val_every=2",
            "sft.episodes=0", "skills.strategy=ucb", "val_tasks=2", "env.num_workers=0",
            "rollout.tasks_per_step=2", "rollout.group_size=2", "rollout.max_response_tokens=8", "env.max_turns=2",
            "log.progress=false", "log.tensorboard=false", f"env.kwargs={{data_dir: {games}}}", *extra]
    with socket.socket() as free:  # a port of its own: a run just finished may still hold the default one
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                             str(ROOT / "examples" / "accelerate" / config), "--num_processes", "2",
                             "--main_process_port", port, "-m", "sdar_agent.train", "demo", *args],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def metric_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("algo", ["grpo", "sdar"])
def test_two_process_accelerate_run(tmp_path, alfworld_games, algo):
    result = launch_two_processes("ddp.yaml", tmp_path, alfworld_games, f"algo.name={algo}")
    assert "2 processes, data parallel (DDP)" in result.stderr
    rows = metric_rows(tmp_path / "mp" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["rollout/samples"] > 0 and "val/success_rate" in rows[-1]
    if algo == "sdar":
        assert 0 < rows[-1]["sdar/gate_mean"] < 1
    assert (tmp_path / "mp" / "final" / "model.safetensors").is_file()


def test_fsdp_run_shards_and_matches_data_parallel(tmp_path, alfworld_games):
    """The shipped FSDP config on 2 processes: each holds half the weights, and an SFT stage then SDAR
    give DDP's losses, gradient norms and final weights (float32; only summation order differs).

    The SFT batch of 3 split over 2 processes in micro-batches of 1 leaves one process a micro-batch
    short at a step (its zero-loss pass must keep the collectives in step); checkpoints are sharded,
    a run resumed from step 1's repeats step 2, and `evaluate` reads them.
    """
    import shutil

    from safetensors.torch import load_file

    from sdar_agent.evaluate import _load_weights

    extra = ["algo.name=sdar", "sft.episodes=2", "sft.epochs=1", "sft.batch_size=3", "algo.micro_batch_size=1",
             "model.compute_dtype=float32", "save_every=1"]
    fsdp = launch_two_processes("fsdp.yaml", tmp_path / "fsdp", alfworld_games, *extra)
    launch_two_processes("ddp.yaml", tmp_path / "ddp", alfworld_games, *extra)
    assert "2 processes, sharded (FSDP2): this one holds" in fsdp.stderr
    held, total = (int(n.replace(",", "")) for n in
                   fsdp.stderr.split("this one holds ")[1].split(" trained")[0].split(" of "))
    assert held < 0.6 * total
    for stage in ("mp/sft", "mp"):
        ddp_rows = metric_rows(tmp_path / "ddp" / stage / "metrics.jsonl")
        fsdp_rows = metric_rows(tmp_path / "fsdp" / stage / "metrics.jsonl")
        assert [r["step"] for r in fsdp_rows] == [r["step"] for r in ddp_rows]
        for a, b in zip(ddp_rows, fsdp_rows, strict=True):
            for key in ("sft/loss", "sdar/loss", "actor/grad_norm", "episode/return", "val/success_rate"):
                assert (key in a) == (key in b), key
                if key in a:
                    assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), (stage, a["step"], key)
    ddp_final = load_file(str(tmp_path / "ddp" / "mp" / "final" / "model.safetensors"))
    fsdp_final = load_file(str(tmp_path / "fsdp" / "mp" / "final" / "model.safetensors"))
    assert ddp_final.keys() == fsdp_final.keys()  # the tied output head stored once, as save_pretrained does
    for name, weight in ddp_final.items():
        torch.testing.assert_close(fsdp_final[name], weight, rtol=0, atol=1e-6)
    checkpoint = tmp_path / "fsdp" / "mp" / "checkpoints" / "step_000002"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and not list(checkpoint.glob("*.safetensors"))
    model, _ = load_policy(ModelConfig(name="tiny"), torch.device("cpu"))
    _load_weights(model, checkpoint)
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(weight, fsdp_final.get(name, fsdp_final["model.embed_tokens.weight"]))

    shutil.copytree(tmp_path / "fsdp", tmp_path / "resumed")  # lose step 2; resume from step 1's shards
    shutil.rmtree(tmp_path / "resumed" / "mp" / "checkpoints" / "step_000002")
    shutil.rmtree(tmp_path / "resumed" / "mp" / "final")
    launch_two_processes("fsdp.yaml", tmp_path / "resumed", alfworld_games, *extra,
                         f"resume={tmp_path / 'resumed' / 'mp'}")
    full, resumed = (metric_rows(tmp_path / run / "mp" / "metrics.jsonl")[-1] for run in ("fsdp", "resumed"))
    assert resumed["step"] == 2
    for key in ("sdar/loss", "actor/grad_norm", "actor/entropy", "val/success_rate"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6), key


def test_an_fsdp_launch_of_what_fsdp_does_not_run_stops_with_the_key_before_the_run_starts(tmp_path, alfworld_games):
    result = launch_two_processes("fsdp.yaml", tmp_path, alfworld_games, "model.lora_rank=4", "model.train_layers=0",
                                  check=False)
    assert result.returncode != 0
    assert result.stderr.count("error: model.lora_rank=4: LoRA is not supported under FSDP") == 1
    assert "Traceback" not in result.stderr.split("error: model.lora_rank")[0]
    assert not (tmp_path / "mp").exists()


@pytest.mark.parametrize("lora, backend, needs, message", [
    (8, "hf", {"teacher"}, "model.lora_rank=8: LoRA is not supported under FSDP"),
    (0, "vllm", {"teacher"}, "rollout.backend=vllm: only the hf backend generates under FSDP"),
    (0, "hf", {"teacher", "full_logits"}, "algo.divergence: the full-vocabulary divergences read the output head"),
])
def test_what_fsdp_does_not_run_is_refused_by_name(lora, backend, needs, message):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from sdar_agent.config import ConfigError
    from sdar_agent.sharding import check_supported

    with pytest.raises(ConfigError, match=message):
        check_supported(SimpleNamespace(distributed_type=DistributedType.FSDP), lora, backend, needs)
    check_supported(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU), lora, backend, needs)  # DDP: fine


def test_evaluate_cli_on_a_trained_checkpoint(tmp_path, alfworld_games):
    run_train(tmp_path, alfworld_games, "ev", steps=2)
    from sdar_agent.cli import evaluate_main as main

    final, step2 = tmp_path / "ev" / "final", tmp_path / "ev" / "checkpoints" / "step_000002"
    common = ["demo", "model.name=tiny", "tasks=3", "env.num_workers=0", "rollout.max_response_tokens=8",
              "env.max_turns=2", f"env.kwargs={{data_dir: {alfworld_games}}}"]
    for checkpoint in (final, step2):
        assert main([*common, f"checkpoint={checkpoint}"]) == 0
        result = json.loads((checkpoint / "eval.json").read_text())
        assert result["episodes"] == 3 and 0.0 <= result["summary"]["success_rate"] <= 1.0
        low, high = result["wilson_95"]
        assert low <= result["success_rate"] <= high and len(result["panel"]) == 3 and result["commit"]
    # avg@k on the same fixed panel, and a paired comparison with the other checkpoint's report
    assert main([*common, f"checkpoint={final}", "eval.samples=2", f"compare={step2}"]) == 0
    again = json.loads((final / "eval.json").read_text())
    assert again["panel"] == result["panel"] and again["samples"] == 2 and again["episodes"] == 6
    assert all(len(again["outcomes"][t]) == 2 for t in again["panel"])
    comparison = json.loads((final / "compare.json").read_text())
    assert comparison["tasks"] == 3 and comparison["samples"] == 2 and 0.0 <= comparison["mcnemar_p"] <= 1.0
    assert comparison["difference_low"] <= comparison["difference"] <= comparison["difference_high"]
    # an evaluation of another panel is refused, not compared
    assert main([*common, "tasks=2", f"checkpoint={final}", f"compare={step2 / 'eval.json'}"]) == 2


def test_ctrl_c_finishes_the_step_and_checkpoints(tmp_path, alfworld_games):
    import signal
    import time

    args = ["demo", "model.name=tiny", "algo.name=grpo", "name=stop", f"output_dir={tmp_path}", "steps=500",
            "sft.episodes=0",
            "save_every=0", "val_every=0", "env.num_workers=0", "rollout.tasks_per_step=1", "rollout.group_size=2",
            "rollout.max_response_tokens=4", "env.max_turns=1", "log.progress=false", "log.tensorboard=false",
            f"env.kwargs={{data_dir: {alfworld_games}}}"]
    proc = subprocess.Popen([sys.executable, "-m", "sdar_agent.train", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "stop" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-2000:]
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    checkpoints = sorted((tmp_path / "stop" / "checkpoints").glob("step_*"))
    assert checkpoints and checkpoints[-1].name == f"step_{steps[-1]:06d}" and steps[-1] < 500
    assert "checkpointing" in out and not (tmp_path / "stop" / "final").exists()


@pytest.mark.parametrize("cli, args, message", [
    ("evaluate", ["split=bogus"], "split 'bogus' is not a split of sdar/ALFWorld-v0: expected one of ['train', "),
    ("train", ["env.id=sdar/Nope-v0"], "env.id='sdar/Nope-v0' is not a registered environment. Did you mean"),
    ("train", ["alfworld_grpo_qwen2.5-3b"], "'Qwen/Qwen2.5-3B-Instruct' is not in the local Hugging Face cache"),
    ("train", ["model.name=does/not-exist"], "hf download does/not-exist"),
    ("evaluate", ["checkpoint=/nonexistent"], "checkpoint='/nonexistent' does not exist"),
    ("evaluate", ["tasks=0"], "tasks=0: expected >= 1"),
    ("train", ["resume=/nonexistent"], "resume='/nonexistent' does not exist"),
    pytest.param("train", ["rollout.backend=vllm"], "rollout.backend=vllm needs",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU machine may run vLLM")),
])
def test_clis_check_what_they_can_before_anything_loads(cli, args, message, capsys, monkeypatch):
    import importlib

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no Hub lookups from tests
    main = getattr(importlib.import_module("sdar_agent.cli"), f"{cli}_main")
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1  # one line, no traceback


@pytest.mark.parametrize("cli", ["train", "evaluate"])
def test_cli_help_lists_presets_and_keys(cli):
    result = subprocess.run([sys.executable, "-m", f"sdar_agent.{cli}", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "presets: " in result.stdout and "demo_webshop" in result.stdout and "algo.lr=1e-06" in result.stdout
    assert "rollout.group_size=8  Rollouts per task: GRPO's group" in result.stdout


def test_activation_checkpointing_without_deprecation_warnings():
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = load_policy(ModelConfig(name="tiny", gradient_checkpointing=True), torch.device("cpu"))
        model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False).logits.sum().backward()
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert not [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))], \
        [str(w.message) for w in caught]


def test_a_run_folder_is_never_mixed(tmp_path, alfworld_games, lenient_template):
    import json

    from sdar_agent.config import ConfigError, load_config
    from sdar_agent.train import run
    from sdar_agent.trainer import Trainer

    def cfg(*extra):
        return load_config("demo", [
            "model.name=tiny", "algo.name=grpo", "name=dup", f"output_dir={tmp_path}", "steps=1", "save_every=0",
            "val_every=0", "sft.episodes=0", "env.num_workers=0", "rollout.tasks_per_step=1", "rollout.group_size=2",
            "rollout.max_response_tokens=4", "env.max_turns=1", "log.progress=false", "log.tensorboard=false",
            "log.plot=false", f"env.kwargs={{data_dir: {alfworld_games}}}", f"rollout.template={LENIENT}", *extra])

    first, second = run(cfg()), run(cfg())  # the command line's path: a second run gets its own folder
    assert (first["rl"]["run_dir"], second["rl"]["run_dir"]) == (str(tmp_path / "dup"), str(tmp_path / "dup-2"))
    with pytest.raises(ConfigError, match=f"{tmp_path / 'dup'} already holds a run: continue it with resume="):
        Trainer(cfg())  # a trainer refuses a folder with a run in it
    run(cfg("overwrite=true"))
    rows = [json.loads(line) for line in (tmp_path / "dup" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]  # replaced, not appended
    assert not (tmp_path / "dup-3").exists()


def test_checkpoints_are_pruned_and_save_every_0_keeps_only_the_final_model(tmp_path, alfworld_games):
    run_train(tmp_path, alfworld_games, "keep", "save_every=1", "save_total_limit=2", steps=3)
    assert sorted(p.name for p in (tmp_path / "keep" / "checkpoints").iterdir()) == ["step_000002", "step_000003"]
    run_train(tmp_path, alfworld_games, "none", "save_every=0", steps=1)
    assert not (tmp_path / "none" / "checkpoints").exists() and (tmp_path / "none" / "final").is_dir()


def test_a_checkpoint_reloads_to_the_saved_weights_without_warnings(tmp_path, alfworld_games, caplog):
    import logging

    from safetensors.torch import load_file

    from sdar_agent.config import load_config
    from sdar_agent.trainer import Trainer

    with caplog.at_level(logging.WARNING):
        run_train(tmp_path, alfworld_games, "ck", "save_every=1", steps=1)
    assert "Removed shared tensor" not in caplog.text
    stored = load_file(tmp_path / "ck" / "checkpoints" / "step_000001" / "model.safetensors")
    assert "lm_head.weight" not in stored  # the tied output embedding is stored once, as save_pretrained does
    final = load_file(tmp_path / "ck" / "final" / "model.safetensors")
    cfg = load_config("demo", ["model.name=tiny", "name=ck", f"output_dir={tmp_path}", "env.num_workers=0",
                               f"env.kwargs={{data_dir: {alfworld_games}}}", "log.tensorboard=false",
                               f"resume={tmp_path / 'ck'}", "algo.name=grpo"])
    trainer = Trainer(cfg)
    try:
        state = trainer.acc.unwrap_model(trainer.model).state_dict()
    finally:
        trainer.close()
    assert trainer.state.step == 1
    for name, tensor in final.items():
        assert torch.equal(state[name], tensor), name
    assert state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()  # still tied


def test_a_corrupt_checkpoint_never_reaches_final_and_resume_falls_back(tmp_path, alfworld_games, caplog, capsys):
    """No file of one folder changes through another; resume skips a corrupt or unfinished newest checkpoint."""
    import logging

    run_train(tmp_path, alfworld_games, "cc", "save_every=1", "save_total_limit=3", steps=2)
    checkpoints = tmp_path / "cc" / "checkpoints"
    final = (tmp_path / "cc" / "final" / "model.safetensors").read_bytes()
    newest = checkpoints / "step_000002" / "model.safetensors"
    with open(newest, "r+b") as f:  # a disk-full truncation of the newest checkpoint's weights
        f.truncate(1000)
    assert (tmp_path / "cc" / "final" / "model.safetensors").read_bytes() == final  # final/ is intact
    (checkpoints / "step_000003.partial").mkdir()  # a save killed half-way
    with caplog.at_level(logging.WARNING):
        rows, _ = run_train(tmp_path, alfworld_games, "cc", "save_every=1", f"resume={tmp_path / 'cc'}", steps=3)
    assert "skipping step_000003.partial" in caplog.text and "its save never finished" in caplog.text
    assert "skipping step_000002" in caplog.text
    assert "model.safetensors: its bytes are not the ones saved" in caplog.text
    assert [r["step"] for r in rows] == [1, 2, 3]  # resumed from step 1: steps 2 and 3 written again
    from sdar_agent.config import ConfigError, load_config
    from sdar_agent.trainer import Trainer

    with open(checkpoints / "step_000003" / "model.safetensors", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ConfigError, match=r"step_000003/model.safetensors: its bytes are not the ones saved"):
        Trainer(load_config("demo", ["model.name=tiny", "name=cc", f"output_dir={tmp_path}", "algo.name=grpo",
                                     f"resume={checkpoints / 'step_000003'}"]))
    from sdar_agent.cli import evaluate_main

    capsys.readouterr()
    assert evaluate_main(["demo", "model.name=tiny", f"checkpoint={checkpoints / 'step_000003'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step_000003/model.safetensors: its bytes are not the ones saved" in err


def test_resume_continues_the_named_run_and_never_touches_another(tmp_path, alfworld_games, lenient_template):
    from sdar_agent.config import load_config
    from sdar_agent.train import run

    def cfg(*extra):
        return load_config("demo", [
            "model.name=tiny", "algo.name=grpo", f"output_dir={tmp_path}", "save_every=1", "val_every=0",
            "sft.episodes=0", "env.num_workers=0", "rollout.tasks_per_step=1", "rollout.group_size=2",
            "rollout.max_response_tokens=4", "env.max_turns=1", "log.progress=false", "log.tensorboard=false",
            "log.plot=false", f"env.kwargs={{data_dir: {alfworld_games}}}", f"rollout.template={LENIENT}", *extra])

    run(cfg("name=demo", "steps=3"))
    run(cfg("name=x", "steps=1"))
    demo_metrics = (tmp_path / "demo" / "metrics.jsonl").read_bytes()
    result = run(cfg("steps=2", f"resume={tmp_path / 'x'}"))  # no name=: the preset's name is "demo"
    assert result["rl"]["run_dir"] == str(tmp_path / "x") and result["rl"]["step"] == 2
    assert (tmp_path / "demo" / "metrics.jsonl").read_bytes() == demo_metrics  # the other run is untouched
    assert [json.loads(line)["step"] for line in (tmp_path / "x" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    from sdar_agent.config import ConfigError
    from sdar_agent.trainer import Trainer

    with pytest.raises(ConfigError, match="holds another run"):  # a trainer never resumes into another run's folder
        Trainer(cfg("name=demo", "steps=3", f"resume={tmp_path / 'x'}"))
    assert (tmp_path / "demo" / "metrics.jsonl").read_bytes() == demo_metrics


def test_overwrite_removes_only_a_runs_own_outputs(tmp_path, alfworld_games, lenient_template):
    from sdar_agent.config import ConfigError, load_config
    from sdar_agent.train import run

    with pytest.raises(ConfigError, match="name='..' is invalid"):
        load_config("demo", ["name=..", "overwrite=true"])
    stranger = tmp_path / "notes"  # a folder of the user's that happens to hold a metrics.jsonl
    stranger.mkdir()
    (stranger / "metrics.jsonl").write_text("my own numbers\n")
    (stranger / "config.yaml").write_text("mine: true\n")
    with pytest.raises(ConfigError, match="not a run folder sdar wrote"):
        run(load_config("demo", ["model.name=tiny", "name=notes", f"output_dir={tmp_path}", "overwrite=true",
                                 "sft.episodes=0", "env.num_workers=0", f"env.kwargs={{data_dir: {alfworld_games}}}"]))
    assert (stranger / "metrics.jsonl").read_text() == "my own numbers\n" and (stranger / "config.yaml").is_file()


def test_the_same_seed_gives_the_same_run_whatever_the_load(tmp_path, alfworld_games):
    """Two SDAR runs of 2 steps, env workers in subprocesses, the second beside a busy process: equal metrics."""
    extra = ("algo.name=sdar", "env.num_workers=-1", "skills.bank=", "save_every=0")
    quiet, _ = run_train(tmp_path, alfworld_games, "quiet", *extra)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded, _ = run_train(tmp_path, alfworld_games, "loaded", *extra)
    finally:
        hog.kill()
    assert [r["step"] for r in loaded] == [1, 2]
    for a, b in zip(quiet, loaded, strict=True):
        keys = {k for k in a if not k.startswith(("perf/", "time")) and isinstance(a[k], float | int)}
        assert keys >= {"sdar/loss", "sdar/gate_mean", "actor/pg_loss", "actor/grad_norm", "episode/return"}
        for key in sorted(keys):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def test_log_probs_are_taken_at_the_sampling_temperature(tmp_path, alfworld_games, lenient_template):
    """T = 0.7: every pass scores a sampled token with log softmax(logits / 0.7) of the model that generated it."""
    from sdar_agent.config import load_config
    from sdar_agent.trainer import Trainer

    cfg = load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", "algo.name=grpo", "name=temp", f"output_dir={tmp_path}",
        "steps=1", "sft.episodes=0", "val_every=0", "env.num_workers=0", "rollout.tasks_per_step=1",
        "rollout.group_size=2", "rollout.max_response_tokens=6", "env.max_turns=1", "rollout.temperature=0.7",
        "log.progress=false", "log.tensorboard=false", "log.plot=false", f"env.kwargs={{data_dir: {alfworld_games}}}",
        f"rollout.template={lenient_template}"])
    trainer = Trainer(cfg)
    try:
        assert trainer.passes.temperature == 0.7
        samples = trainer.source.next_batch(trainer).samples
        old = trainer._score_responses(samples, teacher=False)[0]
        model = trainer.acc.unwrap_model(trainer.model)
        for sample, logp in zip(samples, old, strict=True):
            ids = torch.tensor([sample.prompt_ids + sample.response_ids])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, len(sample.prompt_ids) - 1 : -1].float()  # (T, V)
            want = torch.log_softmax(logits / 0.7, -1).gather(-1, torch.tensor(sample.response_ids)[:, None])[:, 0]
            assert torch.allclose(logp, want, atol=1e-5)
            assert not torch.allclose(logp, torch.log_softmax(logits, -1).gather(
                -1, torch.tensor(sample.response_ids)[:, None])[:, 0], atol=1e-3)  # not T = 1
    finally:
        trainer.close()


def test_a_non_finite_loss_skips_the_step_is_written_and_stops_the_run(tmp_path, alfworld_games, lenient_template,
                                                                     monkeypatch, caplog):
    import logging

    from sdar_agent import trainer as trainer_module
    from sdar_agent.config import load_config
    from sdar_agent.trainer import NonFiniteTraining, Trainer

    real = trainer_module.total_loss

    def diverged(terms, mb, cfg):
        loss, metrics = real(terms, mb, cfg)
        return loss * float("nan"), {**metrics, "actor/pg_loss": loss.detach() * float("nan")}

    monkeypatch.setattr(trainer_module, "total_loss", diverged)
    cfg = load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", "algo.name=grpo", "name=nan", f"output_dir={tmp_path}",
        "steps=5", "sft.episodes=0", "val_every=0", "save_every=0", "env.num_workers=0", "rollout.tasks_per_step=1",
        "rollout.group_size=2", "rollout.max_response_tokens=4", "env.max_turns=1", "algo.max_nonfinite_steps=2",
        "log.progress=false", "log.tensorboard=false", "log.plot=false", f"env.kwargs={{data_dir: {alfworld_games}}}",
        f"rollout.template={lenient_template}"])
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.acc.unwrap_model(trainer.model).state_dict().items()}
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(NonFiniteTraining, match="algo.max_nonfinite_steps=2"):
            trainer.train()
    finally:
        trainer.close()
    after = trainer.acc.unwrap_model(trainer.model).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step was taken on a NaN gradient
    rows = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["actor/pg_loss"] is None and r["actor/nonfinite_steps"] == 1.0 for r in rows)  # written as null
    assert "skipping this optimizer step" in caplog.text and "actor/pg_loss is nan" in caplog.text


def test_an_env_of_another_package_trains_with_its_own_answer_format(tmp_path):
    from sdar_agent.config import load_config
    from sdar_agent.prompts import template_for
    from tests.helpers import train_and_compare
    from tests.integration.own_format_env import INTRO

    env_id = "tests.integration.own_format_env:test/Own-v0"
    assert template_for(env_id).intro == INTRO
    rows, _ = train_and_compare(load_config("demo", [
        "model.name=tiny", "model.compute_dtype=float32", "algo.name=grpo", "name=own", f"output_dir={tmp_path}",
        "steps=1", "sft.episodes=0", "val_every=1", "val_tasks=2", "save_every=0", f"env.id={env_id}",
        "env.val_splits=[test]", "env.kwargs={}", "env.num_workers=0", "rollout.tasks_per_step=1",
        "rollout.group_size=2", "rollout.max_response_tokens=4", "env.max_turns=2", "log.progress=false",
        "log.tensorboard=false", "log.plot=false"]))
    # a random model never writes <think>/<action>: only the env's own parser calls its answers valid
    assert rows[0]["episode/valid_action_ratio"] == 1.0 and rows[0]["val/valid_action_ratio"] == 1.0


def test_the_first_run_is_quiet_and_says_what_each_stage_does(tmp_path, alfworld_games, lenient_template, capfd,
                                                               caplog, monkeypatch):
    import logging

    from sdar_agent.models import embedded_model_dir

    monkeypatch.setenv("SDAR_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="sdar_agent"):
        embedded_model_dir("embedded:smollm2-135m-instruct")  # the one-time conversion of the embedded model
        run_train(tmp_path, alfworld_games, "quiet", "log.progress=true", "val_every=1", "val_tasks=2", steps=1)
    console = capfd.readouterr().err
    for library_bar in ("de-quantizing", "Loading weights", "Writing model shards"):
        assert library_bar not in console
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("sdar_agent")]
    assert not [m for level, m in records if level == "WARNING"], records
    assert any(m.startswith("converting embedded:") for _, m in records)
    said = [m for _, m in records if "validation, step" in m]
    assert said[0] == "rl validation, step 1, valid_unseen: 2 tasks x 1 episode" and "won)" in said[1]
    assert "episode" in console  # the validation's own progress line (games done of N)
