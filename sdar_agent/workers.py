"""Envs stepped in worker processes, so a slow or crashing env never stalls or kills training.

`EnvPool` holds one env per slot. With workers, each slot's env lives in its own process; requests
go out to all slots at once and answers are collected with a deadline. A slot whose process dies,
raises, or misses the deadline is restarted with a fresh env and reported as failed: the caller
drops that trajectory (with a logged warning) and the run goes on.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import multiprocessing as mp
import time
import traceback
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from sdar_agent.config import ConfigError, EnvConfig

logger = logging.getLogger(__name__)


def make_env(env_id: str, kwargs: dict[str, Any], max_turns: int) -> gym.Env:
    """`gym.make` with the env module imported first (e.g. "sdar/ALFWorld-v0" -> `sdar_envs`)."""
    import sdar_envs  # noqa: F401  registers the sdar envs

    if ":" not in env_id and env_id not in gym.registry and "/" in env_id:
        raise ValueError(f"env.id={env_id!r} is not registered; registered sdar envs: {list(sdar_envs.ENV_IDS)}.")
    return gym.make(env_id, max_episode_steps=max_turns, **kwargs)


def env_class(env_id: str) -> type:
    """The class registered for `env_id` (its module is imported; the env is not made)."""
    import sdar_envs  # noqa: F401  registers the sdar envs

    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"env.id={env_id!r}: cannot import {module!r} ({err}).") from None
    if name not in gym.registry:
        known = sorted(k for k in gym.registry if "/" in k)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else f" Registered: {known}."
        raise ConfigError(f"env.id={env_id!r} is not a registered environment.{hint}")
    entry = gym.spec(name).entry_point
    if not isinstance(entry, str):
        return entry
    module_name, _, attribute = entry.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except ImportError as err:
        raise ConfigError(f"env.id={env_id!r} needs a package that is not installed ({err}); "
                          "install the env's extra, e.g. pip install 'sdar[all]'.") from None


@dataclass
class Failure:
    """A slot that did not answer: its trajectory must be dropped."""

    reason: str


def dispatch(env: gym.Env, command: str, payload: Any) -> Any:
    """One pool request on `env`: `reset` (payload: its keyword arguments), `step` (an action), `call` (a name)."""
    if command == "reset":
        return env.reset(**payload)
    if command == "step":
        return env.step(payload)
    if command == "call":
        return getattr(env.unwrapped, payload)
    raise ValueError(f"unknown command {command!r}")


def _worker(conn, env_id: str, kwargs: dict[str, Any], max_turns: int) -> None:
    env = make_env(env_id, kwargs, max_turns)
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:
            return
        if command == "close":
            env.close()
            conn.close()
            return
        try:
            conn.send(("ok", dispatch(env, command, payload)))
        except Exception:  # the env's own error: report it, the parent restarts this slot
            conn.send(("error", traceback.format_exc(limit=5)))


class _Slot:
    def __init__(self, ctx, env_id: str, kwargs: dict[str, Any], max_turns: int) -> None:
        self.args = (env_id, kwargs, max_turns)
        self.ctx = ctx
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.process = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.process.start()
        child.close()

    def restart(self) -> None:
        self.kill()
        self._start()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class EnvPool:
    """`n` envs of one id; `reset_all` / `step_all` talk to many slots at once."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], n: int, max_turns: int,
                 use_workers: bool = True, timeout_s: float = 120.0) -> None:
        self.env_id, self.kwargs, self.n, self.max_turns = env_id, dict(kwargs), n, max_turns
        self.timeout_s = timeout_s
        self.use_workers = use_workers
        if use_workers:
            # One env here first: one-time set-up (generating embedded data, building an index)
            # happens once, in this process, before the workers start and find it done.
            make_env(env_id, self.kwargs, max_turns).close()
            ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
            self.slots = [_Slot(ctx, env_id, self.kwargs, max_turns) for _ in range(n)]
        else:
            self.envs = [make_env(env_id, self.kwargs, max_turns) for _ in range(n)]

    @classmethod
    def from_config(cls, env: EnvConfig, split: str, n: int) -> EnvPool:
        """`n` envs of the config's env on `split` (the config's kwargs, turn limit, workers, timeout)."""
        return cls(env.id, {**env.kwargs, "split": split}, n, env.max_turns, use_workers=env.num_workers != 0,
                   timeout_s=env.step_timeout_s)

    def call(self, attribute: str) -> Any:
        """An attribute of slot 0's env (e.g. `task_ids`)."""
        result = self._exchange({0: ("call", attribute)})[0]
        if isinstance(result, Failure):
            raise RuntimeError(f"{self.env_id}: could not read {attribute!r}: {result.reason}")
        return result

    def reset_all(self, options: dict[int, dict[str, Any]]) -> dict[int, Any]:
        """Reset the given slots: {slot: reset kwargs} -> {slot: (obs, info) or Failure}."""
        return self._exchange({i: ("reset", kw) for i, kw in options.items()})

    def step_all(self, actions: dict[int, str]) -> dict[int, Any]:
        """Step the given slots: {slot: action} -> {slot: step tuple or Failure}."""
        return self._exchange({i: ("step", a) for i, a in actions.items()})

    def _exchange(self, requests: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        if not self.use_workers:
            return {i: self._local(i, command, payload) for i, (command, payload) in requests.items()}
        results: dict[int, Any] = {}
        for i, request in requests.items():
            try:
                self.slots[i].conn.send(request)
            except (BrokenPipeError, OSError) as err:
                results[i] = self._fail(i, f"worker died ({type(err).__name__})")
        deadline = time.monotonic() + self.timeout_s
        for i in requests:
            if i in results:
                continue
            conn = self.slots[i].conn
            try:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    results[i] = self._fail(i, f"no answer within {self.timeout_s:.0f}s")
                    continue
                status, payload = conn.recv()
            except (EOFError, OSError) as err:
                results[i] = self._fail(i, f"worker died ({type(err).__name__})")
                continue
            results[i] = payload if status == "ok" else self._fail(i, f"env raised:\n{payload}")
        return results

    def _local(self, i: int, command: str, payload: Any) -> Any:
        try:
            return dispatch(self.envs[i], command, payload)
        except Exception:
            self.envs[i] = make_env(self.env_id, self.kwargs, self.max_turns)
            return Failure(f"env raised:\n{traceback.format_exc(limit=5)}")

    def _fail(self, i: int, reason: str) -> Failure:
        logger.warning("%s slot %d failed (%s); restarting it and dropping its trajectory.", self.env_id, i, reason)
        self.slots[i].restart()
        return Failure(reason)

    def close(self) -> None:
        if not self.use_workers:
            for env in self.envs:
                env.close()
            return
        for slot in self.slots:
            try:
                slot.conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for slot in self.slots:
            slot.process.join(timeout=5)
            slot.kill()
