"""Test-session setup: CPU only, wandb offline, cheap XLA compiles, and a
persistent XLA compile cache.

Many tests build the same programs (an LO update, a meta-training outer step)
from fresh Python objects; the on-disk cache makes every repeat a cache hit
instead of another multi-second CPU compile.

Almost every test is compile-bound on a small CPU (tiny models, few steps), so
the tests compile with XLA's CPU backend optimizations off (``FAST_COMPILE_FLAGS``,
as ``scripts/gpu_check.py --dry-run`` does). Measured on the 2-core CPU: the
tiny preset's PES outer step on one digits MLP compiles in ~9 CPU-seconds
instead of ~25 (and runs in 0.13 s instead of 0.05), an MLPLOpt training sweep
in ~6 instead of ~11; the losses agree to the printed digits.
``LOPT_TEST_FULL_OPT=1`` compiles as users get it (XLA's defaults). Subprocesses
that the tests start inherit the flags through ``XLA_FLAGS`` (the tests that
set XLA_FLAGS for a subprocess add to it).
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# scripts/gpu_check.py's DRY_XLA_FLAGS. (Adding --xla_cpu_use_fusion_emitters=false
# would halve the compiles again, but then a jitted computation on a closed-over
# constant (folded at compile time) and on the same data as an argument differ in
# the last bit: test_meta_tasks' exact comparison of the two fails.)
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


# Set before jax starts a backend; the xdist workers and the tests' subprocesses
# inherit them. Not on a GPU (gpu_check.sh's device run of the fused-kernel tests).
if (os.environ.get("LOPT_TEST_FULL_OPT") != "1" and os.environ["JAX_PLATFORMS"] == "cpu"
    and FAST_COMPILE_FLAGS not in os.environ.get("XLA_FLAGS", "")):
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                                   FAST_COMPILE_FLAGS]))

import jax  # noqa: E402

_CACHE = os.environ.get("LOPT_TEST_COMPILE_CACHE") or os.path.join(
    tempfile.gettempdir(), "lopt-test-xla-cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
