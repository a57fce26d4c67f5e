"""Checks a run can start, made before any model, env or index loads (one clear line each).

`check_runnable(cfg, ...)` answers in seconds what would otherwise fail minutes later in a
traceback: an env id that is not registered, a split the env does not have, a model that is
neither a local folder, an embedded model, `tiny`, nor in the Hugging Face cache (and the Hub
cannot be reached), a checkpoint or resume folder that is not one, a skill bank that cannot be
found, a vLLM backend without vllm or a GPU, validation on the training tasks. Each failure is a
`ConfigError` that says what to do; the CLIs print it and exit 2.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

from sdar_agent.checkpoints import STATE, Checkpoints, CorruptCheckpoint
from sdar_agent.config import ConfigError, ModelConfig, TrainConfig
from sdar_agent.workers import env_class


def check_runnable(cfg: TrainConfig, *, splits: Sequence[str] = (), checkpoint: str | None = None,
                   uses_skills: bool = False) -> None:
    """Every check below for a run of `cfg` on `splits` (default: its train and validation splits)."""
    check_env(cfg.env.id, list(splits) or [cfg.env.split, *cfg.env.val_splits], cfg.env.kwargs)
    if not splits and cfg.val_every:
        check_held_out(cfg)
    check_device(cfg.model.device)
    if checkpoint:
        check_checkpoint(checkpoint)
    if not (checkpoint and (Path(checkpoint) / "config.json").is_file()):
        check_model(cfg.model)
    if cfg.resume:
        check_resume(cfg.resume)
    if uses_skills:
        check_skill_bank(cfg.skills.bank or env_class(cfg.env.id).skill_bank or "")
    if cfg.rollout.backend == "vllm":
        check_vllm()


def check_held_out(cfg: TrainConfig) -> None:
    """A training run that validates needs validation tasks that are not its training tasks."""
    if why := env_class(cfg.env.id).same_tasks_in_every_split(cfg.env.kwargs or {}):
        raise ConfigError(f"env.kwargs: {why}. Validation on env.val_splits={cfg.env.val_splits} would replay "
                          f"the training questions of env.split={cfg.env.split!r}; or set val_every=0 to train "
                          "without validation.")


def check_vllm() -> None:
    """`rollout.backend=vllm` needs vllm installed and a CUDA GPU."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout.backend=vllm needs vllm: pip install 'sdar[vllm]' on a CUDA machine, "
                          "or use rollout.backend=hf.")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("rollout.backend=vllm needs a CUDA GPU and none is visible: use rollout.backend=hf.")


def check_env(env_id: str, splits: Sequence[str], kwargs: dict | None = None) -> None:
    """The env id is registered, each split is one of the env's, and the env takes every key of `env.kwargs`."""
    import inspect

    cls = env_class(env_id)
    known = getattr(cls, "splits", None)
    for split in splits:
        if known is not None and split not in known:
            raise ConfigError(f"split {split!r} is not a split of {env_id}: expected one of {list(known)}.")
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a callable whose signature cannot be read: the env will say
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = {name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    unknown = sorted(set(kwargs or {}) - accepted - {"split"})
    if unknown:
        raise ConfigError(f"env.kwargs: {env_id} takes no {', '.join(map(repr, unknown))}: its arguments are "
                          f"{sorted(accepted - {'split', 'render_mode'})}.")


def check_device(device: str) -> None:
    """`model.device` names a device torch knows, and a CUDA device is visible when asked for (`models.pick_device`)."""
    from sdar_agent.models import pick_device

    pick_device(ModelConfig(device=device))


def check_model(cfg: ModelConfig) -> None:
    """The model can be loaded here: `tiny`, an embedded model, a local folder, or a Hub id (cached or reachable)."""
    from sdar_agent.models import EMBEDDED, TINY

    name = cfg.name
    if name == TINY:
        return
    if name.startswith("embedded:"):
        if name not in EMBEDDED:
            raise ConfigError(f"model.name={name!r}: the embedded models are {sorted(EMBEDDED)}.")
        package, _, install = EMBEDDED[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"model.name={name!r} needs the package {package!r}: {install}")
        return
    path = Path(name).expanduser()
    if path.exists():
        config = path / "config.json"
        if not config.is_file():
            raise ConfigError(f"model.name={name!r} is a folder without config.json: give a Hugging Face model folder.")
        try:
            fields = json.loads(config.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"model.name={name!r}: {config} is not valid JSON ({err}).") from None
        if not isinstance(fields, dict) or "model_type" not in fields:
            raise ConfigError(f"model.name={name!r}: {config} names no model_type: not a Hugging Face model config.")
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ConfigError(f"model.name={name!r}: no such folder.")
    _check_hub_model(name)


def _check_hub_model(name: str) -> None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    how = (f"download it where there is internet (`hf download {name}`) and copy the Hugging Face cache "
           "(~/.cache/huggingface) here, or give a local model folder as model.name=")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ConfigError(f"model.name={name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                          f"{how}.")
    from huggingface_hub import model_info

    try:
        model_info(name, timeout=10)
    except Exception as err:  # noqa: BLE001 - no network, unknown repo, gated repo ...
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise ConfigError(f"model.name={name!r} is not in the local Hugging Face cache and the Hub cannot give it "
                          f"({reason}): {how}.") from None


def check_checkpoint(checkpoint: str) -> None:
    """A model folder (`final/`), a LoRA adapter, or a training checkpoint (`checkpoints/step_N/`)."""
    path = Path(checkpoint)
    if not path.is_dir():
        raise ConfigError(f"checkpoint={checkpoint!r} does not exist: give a run's final/ folder or one of its "
                          "checkpoints/step_N/ folders.")
    markers = ("config.json", "adapter_config.json")
    fsdp = (path / "pytorch_model_fsdp_0").is_dir()  # an FSDP run's sharded checkpoint
    if not any((path / m).is_file() for m in markers) and not any(path.glob("model*.safetensors")) and not fsdp:
        raise ConfigError(f"checkpoint={checkpoint!r} holds no model (no config.json, adapter_config.json, "
                          "model*.safetensors or pytorch_model_fsdp_0/): give a run's final/ folder or one of its "
                          "checkpoints/step_N/ folders.")
    if (path / STATE).is_file():  # a training checkpoint: its files as saved
        try:
            Checkpoints.verify(path)
        except CorruptCheckpoint as err:
            raise ConfigError(f"checkpoint={checkpoint!r}: {err}; give another checkpoint.") from None


def check_resume(resume: str) -> None:
    """A run folder with checkpoints, or one checkpoint folder."""
    path = Path(resume)
    if not path.is_dir():
        raise ConfigError(f"resume={resume!r} does not exist: give a run folder (runs/<name>) or a checkpoint folder.")
    if not (path / "sdar_state.json").is_file() and not any((path / "checkpoints").glob("step_*/sdar_state.json")):
        raise ConfigError(f"resume={resume!r} holds no checkpoint (no sdar_state.json in it or in its checkpoints/).")


def check_skill_bank(bank: str) -> None:
    """A bundled bank name, a bank file, an SDAR folder, or `sdar:<env>` with $SDAR_SKILLS_DIR set; loaded whole."""
    from skillbank.bank import BANKS_DIR, OFFICIAL, SkillBank, bundled_banks, official_folder
    from skillbank.schema import SkillBankError

    if not bank:
        raise ConfigError("the run uses skills, but neither skills.bank nor the env names a bank: set skills.bank=.")
    if bank.startswith(OFFICIAL):
        try:
            official_folder(bank)
        except FileNotFoundError as err:
            raise ConfigError(f"skills.bank={bank!r}: {err}") from None
    elif not Path(bank).exists() and not (BANKS_DIR / f"{bank}.json").is_file():
        raise ConfigError(f"skills.bank={bank!r} not found: give a bank file, an SDAR skill folder, sdar:<env>, or one "
                          f"of the bundled banks {bundled_banks()}.")
    try:
        SkillBank.load(bank)
    except SkillBankError as err:
        more = f"; and {len(err.problems) - 3} more" if len(err.problems) > 3 else ""
        raise ConfigError(f"skills.bank={bank!r} is malformed: {'; '.join(err.problems[:3])}{more}.") from None
