"""benchmarks/gpu_step.py end to end on a CPU with its tiny shape (the real shapes need a GPU)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_step.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_step_prints_every_phase_for_the_hf_backend(alfworld_games, capsys):
    gpu_step = load_script()
    gpu_step.main(["--shape", "tiny", "--backends", "hf,vllm", f"env.kwargs={{data_dir: {alfworld_games}}}",
                   "env.num_workers=0", "rollout.tasks_per_step=1", "rollout.group_size=2",
                   "rollout.max_response_tokens=8", "model.compute_dtype=float32",
                   "model.gradient_checkpointing=false"])
    out = capsys.readouterr().out
    figures = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 2:
            figures[cells[0]] = cells[1]
    assert figures["phase"] == "hf"
    for label in ("rollout s", "generation s", "teacher pass s", "update s (teacher incl.)", "generation tokens/s",
                  "bandwidth limit tokens/s", "train tokens/s", "peak memory GB"):
        assert re.fullmatch(r"[\d,]+(\.\d+)?", figures[label]), (label, figures[label])
        assert float(figures[label].replace(",", "")) > 0, label
    assert figures["rows per generate call"] == "2"  # the group's two rollouts in one call
    assert "not run: vllm" in out  # no vllm on a CPU machine


def test_the_3b_shape_has_qwen25_3bs_parameter_count():
    torch = pytest.importorskip("torch")
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(load_script().SHAPES["qwen2.5-3b"])
    config = AutoConfig.for_model(fields.pop("model_type"), vocab_size=151936, **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e9 - 3.09) < 0.01  # Qwen2.5-3B: 3.09 B
