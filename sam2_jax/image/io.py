"""Reading images from files for the predictors and CLIs: 8-bit RGB, whatever the file holds.

PIL's `convert("RGB")` clips 16-bit images (a 16-bit grey PNG opens as mode "I;16" or "I")
to 255, so they would read as white. Here 16-bit images are scaled to 8 bits (x * 255 /
65535, rounded); 32-bit integer and floating-point images, whose value range is not known,
are refused with a message that says how to convert them. (PIL itself reads 16-bit RGB
PNGs as 8-bit "RGB".)
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb8(image: Image.Image, source: str = "image") -> Image.Image:
    """Any PIL image -> an 8-bit "RGB" image (16-bit scaled, not clipped).

    Raises:
      ValueError: a 32-bit integer image with values above 16 bits, or a float image.
    """
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image, np.int64)
        if mode == "I" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
            raise ValueError(
                f"{source}: a 32-bit integer image (values {values.min()} to {values.max()}): "
                "convert it to 8-bit RGB first"
            )
        scaled = np.round(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if mode == "F":
        raise ValueError(
            f"{source}: a floating-point image (mode F) has no known value range: convert it "
            "to 8-bit RGB first"
        )
    return image.convert("RGB")


def read_rgb(path: str | os.PathLike, what: str = "image") -> Image.Image:
    """An image file -> an 8-bit "RGB" PIL image, decoded now (a truncated file fails here).

    Raises:
      ValueError: the file is missing, not an image, corrupt, or of an unsupported depth; the
        message names `what` and the file.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb8(image, f"{what} {path!r}")
    except (OSError, SyntaxError) as err:  # missing, not an image, truncated
        raise ValueError(f"cannot read {what} {path!r}: {err}") from err
