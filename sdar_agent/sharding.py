"""Several processes under `accelerate launch`: data parallel (DDP) or sharded data parallel (FSDP2).

`examples/accelerate/ddp.yaml` keeps a whole model, its gradients and AdamW state on every process;
`examples/accelerate/fsdp.yaml` shards all three per decoder layer (torch's `fully_shard`, applied by
accelerate), so each process holds 1/N of them. What the trainer does differently under FSDP:

- Rollouts, validations and the teacher / old-log-prob passes run inside `full_weights`: every
  layer's full weights are gathered once on entry, so the many forward passes inside run no
  collective and processes may run different numbers of them (one finishes its games before
  another). Generation therefore holds the full weights for a while (4 bytes a parameter in float32).
- The update's forward and backward passes gather and free one layer at a time as usual. (Under
  both, a process that has run out of micro-batches runs `idle_loss`, a one-token forward with a
  zero loss, so that every process gathers and reduces the same gradients as many times.)
- Every process starts from process 0's weights (`broadcast_weights`), as DDP does.
- The final HF folder is written from the gathered full state dict.

Not supported under FSDP (a `ConfigError` says so): LoRA, `rollout.backend=vllm` and the
full-vocabulary divergences (`algo.divergence` other than `reverse_kl`: they read the output head
directly).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch


def make_accelerator(cpu: bool) -> Any:
    """The run's `accelerate.Accelerator`, with FSDP from the launcher's config on CPU processes too.

    accelerate turns its FSDP on only for accelerator devices (GPU, NPU, XPU, ...): CPU processes
    launched with an FSDP config would silently run plain data parallel instead. Here the same plugin
    (built from the `FSDP_*` variables the launcher sets) is switched on for them as well, which is how
    a two-process CPU run (gloo) exercises the sharded path. Only FSDP2 (`fsdp_version: 2`) is supported.
    """
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    from sdar_agent.config import ConfigError

    acc = Accelerator(cpu=cpu)
    wanted = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if wanted and acc.distributed_type == DistributedType.MULTI_CPU:
        # both shared states: a later AcceleratorState() copies the process state's type over its own
        PartialState().distributed_type = acc.state.distributed_type = DistributedType.FSDP
        acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()
    if is_sharded(acc) and not acc.is_fsdp2:
        raise ConfigError("the trainer runs FSDP2 only: set `fsdp_version: 2` in the accelerate config "
                          "(examples/accelerate/fsdp.yaml).")
    return acc


def is_sharded(acc: Any) -> bool:
    """Whether the model is sharded across processes (accelerate's FSDP)."""
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP


def check_supported(acc: Any, lora_rank: int, backend: str, needs: set[str]) -> None:
    """A `ConfigError` for what the trainer does not run under FSDP (see the module docstring)."""
    from sdar_agent.config import ConfigError

    if not is_sharded(acc):
        return
    if lora_rank:
        raise ConfigError(f"model.lora_rank={lora_rank}: LoRA is not supported under FSDP; train the adapter with "
                          "data parallel (examples/accelerate/ddp.yaml), whose memory is the frozen base's.")
    if backend != "hf":
        raise ConfigError(f"rollout.backend={backend}: only the hf backend generates under FSDP.")
    if "full_logits" in needs:
        raise ConfigError("algo.divergence: the full-vocabulary divergences read the output head directly, which "
                          "FSDP shards; use reverse_kl or data parallel (examples/accelerate/ddp.yaml).")


def broadcast_weights(model: Any) -> None:
    """Make every process's weights and buffers process 0's (before sharding: FSDP does not)."""
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


@contextlib.contextmanager
def full_weights(model: Any, acc: Any) -> Iterator[None]:
    """Every FSDP unit's full weights gathered for a stretch of no-gradient forward passes.

    On entry one all-gather per unit and on exit the freeing, the same on every process; inside,
    forward passes run no collective. Outside FSDP it does nothing.
    """
    if not is_sharded(acc):
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    reshard = acc.state.fsdp_plugin.reshard_after_forward
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(reshard, recurse=False)


def idle_loss(model: Any, pad_id: int, device: torch.device) -> torch.Tensor:
    """A zero loss from a one-token forward of the wrapped model.

    A process with no micro-batch left runs it to take part in the same gradient reductions (DDP) or
    per-layer gathers and reductions (FSDP) as the others.
    """
    logits = model(input_ids=torch.full((1, 1), pad_id, device=device)).logits
    return logits.sum() * 0.0


def full_state_dict(acc: Any, model: Any) -> dict[str, torch.Tensor]:
    """The sharded model's whole state dict on the main process ({} on the others; all must call it).

    A tied weight (the output head sharing the input embedding) is kept once, under its first name,
    as `save_pretrained` would keep it.
    """
    state = acc.get_state_dict(model)
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if first.setdefault(id(param), name) != name:
            state.pop(name, None)
    return state


def local_share(params: list[torch.Tensor]) -> tuple[int, int]:
    """(elements this process holds, elements in all) of `params`, sharded (DTensor) or not."""
    held = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in params)
    return held, sum(p.numel() for p in params)
