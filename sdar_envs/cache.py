"""Where sdar keeps what it builds once: generated games, converted model weights."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "SDAR_CACHE_DIR"


def cache_dir() -> Path:
    """`$SDAR_CACHE_DIR`, else `$XDG_CACHE_HOME/sdar`, else `~/.cache/sdar`."""
    base = os.environ.get(CACHE_ENV_VAR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sdar"
    )
    return Path(base)
