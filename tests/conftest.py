import os

# Several fake CPU devices for sharding tests; must be set before JAX initialises. Their
# collectives meet in a rendezvous that XLA aborts the process over (SIGABRT, the whole test
# worker) when one device is 40 s late; on 2 cores shared by 2 workers and their 8 devices
# each, a busy moment can be that late. A real deadlock is still stopped, by the per-test
# timeout (pyproject.toml), which names the test.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=8"
    " --xla_cpu_collective_call_terminate_timeout_seconds=900",
)

# Many tests compile the same programs (the converted models of the parity tests, the tracking
# scan) in different files, which pytest-xdist may hand to different workers: a compilation
# cache on disk, shared by the workers (and the notebooks' kernels, through the environment),
# compiles each once per run. A size limit turns on the cache's file lock, so that workers
# never read an entry while another writes it. Same executables, so the same numbers.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(__file__)), ".pytest_cache", "jax"),
)
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")

import torch  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)


import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

_LIBC_PATH = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_LIBC_PATH) if _LIBC_PATH else None


@pytest.fixture(autouse=True, scope="module")
def _free_memory_after_each_module():
    """Frees what a test module leaves behind in its worker: compiled programs, traces, and
    the heap pages they held (returned to the system, where the other worker can use them).

    Without it a worker grows as it runs module after module: in a full run one reached 13 GB
    in the last trainer test (which peaks at 5 GB alone), the two workers together held most
    of this 24 GB machine, and XLA crashed that worker with SIGSEGV inside a compile (earlier
    runs: inside writing a train step to the disk cache); pytest-xdist then hung.
    """
    yield
    jax.clear_caches()
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)  # glibc: give freed heap pages back to the system


@pytest.fixture(scope="module")
def no_compilation_cache_writes():
    """Compiles in this module (and the processes it starts) are not written to the disk cache.

    For the trainer's SAM 2 steps, each compiled once per run: in full parallel runs whose
    workers had grown to most of the machine's memory (see `_free_memory_after_each_module`),
    XLA crashed the worker with SIGSEGV inside `executable.serialize()` while writing one to
    the cache, twice. Not writing them costs nothing; reading stays on.
    Module-scoped, so that it also covers the module's own module-scoped fixtures.
    """
    never = 10**9  # seconds: no compile takes this long, so none is written
    previous = jax.config.jax_persistent_cache_min_compile_time_secs
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(never))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", never)
        yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous)
