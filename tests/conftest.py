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
