"""Test-session setup: CPU only, wandb offline, and a persistent XLA compile cache.

Many tests build the same programs (an LO update, a meta-training outer step)
from fresh Python objects; the on-disk cache makes every repeat a cache hit
instead of another multi-second CPU compile.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import jax  # noqa: E402

_CACHE = os.environ.get("LOPT_TEST_COMPILE_CACHE") or os.path.join(
    tempfile.gettempdir(), "lopt-test-xla-cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
