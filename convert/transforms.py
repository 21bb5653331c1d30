"""Named, invertible array transforms between PyTorch and Flax weight layouts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Transform:
    name: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


IDENTITY = Transform("identity", lambda a: a, lambda a: a)
# nn.Linear weight (out, in) <-> Dense kernel (in, out)
LINEAR = Transform("linear", lambda a: a.T, lambda a: a.T)
# nn.Conv2d weight (out, in, kh, kw) <-> Conv kernel (kh, kw, in, out)
CONV = Transform("conv", lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1))
# nn.ConvTranspose2d weight (in, out, kh, kw) <-> kernel (in, kh, kw, out)
CONV_TRANSPOSE = Transform(
    "conv_transpose", lambda a: a.transpose(0, 2, 3, 1), lambda a: a.transpose(0, 3, 1, 2)
)
# a (1, C, H, W) parameter map <-> (H, W, C)
NCHW_PARAM = Transform(
    "nchw_param", lambda a: a[0].transpose(1, 2, 0), lambda a: a.transpose(2, 0, 1)[None]
)
# maskmem_tpos_enc (T, 1, 1, C) <-> (T, C)
TPOS_ENC = Transform(
    "tpos_enc", lambda a: a.reshape(a.shape[0], a.shape[-1]), lambda a: a[:, None, None, :]
)
