"""Shared fixtures: a small generated ALFWorld set, and where the shared real data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SMALL_COUNTS = {"train": 12, "valid_seen": 6, "valid_unseen": 6}


def shared_path(*parts: str) -> Path:
    """A path in ../shared/data, or a skip when this checkout has none."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared real-data samples are not beside this checkout")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never let a test read or fill the user's cache, nor pick up their $ALFWORLD_DATA."""
    monkeypatch.setenv("SDAR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sdar-cache"))
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)


@pytest.fixture(scope="session")
def alfworld_games(tmp_path_factory) -> Path:
    """A small generated game set (two of each task type in train): its `json_2.1.1` folder."""
    pytest.importorskip("alfworld", reason="the ALFWorld engine is not installed (pip install 'sdar[alfworld]')")
    from sdar_envs.alfworld.generate import generate_set
    from sdar_envs.alfworld.generator import Difficulty

    out = tmp_path_factory.mktemp("alfworld-games")
    return generate_set(out, SMALL_COUNTS, seed=7, difficulty=Difficulty(6, 4, 2), workers=2, log=lambda _: None)


@pytest.fixture
def lenient_template():
    """`rollout.template=test-lenient`: even-length answers are valid (registered for the test only)."""
    pytest.importorskip("transformers", reason="the trainer needs transformers (pip install 'sdar[train]')")
    from sdar_agent import prompts
    from tests.helpers import LENIENT, lenient_parse

    prompts.register_template(prompts.PromptTemplate(LENIENT, "You are a test agent.", parse=lenient_parse))
    yield LENIENT
    prompts.TEMPLATES.pop(LENIENT, None)


@pytest.fixture(scope="module")
def tiny():
    """A tiny random policy (seeded) and the embedded model's tokenizer, shared by a test module."""
    torch = pytest.importorskip("torch", reason="the trainer needs torch (pip install 'sdar[train]')")
    from sdar_agent.config import ModelConfig
    from sdar_agent.models import load_policy, load_tokenizer

    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny")
    tokenizer = load_tokenizer(cfg)
    model, _ = load_policy(cfg, torch.device("cpu"), tokenizer)
    return model, tokenizer
