import os

# Several fake CPU devices for sharding tests; must be set before JAX initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import torch  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)
