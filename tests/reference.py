"""The parity harness: the official PyTorch SAM 2 (`sam2` package) as a test oracle.

Builds a reference model for a variant and image size, re-randomizes *every* parameter and
buffer with a fixed seed (so nothing initialised to 0 or 1e-6, such as position embeddings,
layer scales or no-object embeddings, can hide a bug), and converts its state_dict with our
converter.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import torch

from sam2_jax.config import get_config
from sam2_jax.convert import state_dict_to_params
from sam2_jax.modeling.sam2_base import SAM2

ALL_VARIANTS = [
    "sam2_hiera_t",
    "sam2_hiera_s",
    "sam2_hiera_b+",
    "sam2_hiera_l",
    "sam2.1_hiera_t",
    "sam2.1_hiera_s",
    "sam2.1_hiera_b+",
    "sam2.1_hiera_l",
]

# SAM 2 and SAM 2.1 configs of one size differ only in four memory / object-pointer flags
# (checked by tests/test_image_encoder.py::test_image_path_configs_equal_between_releases), so
# image-path parity needs one variant per Hiera trunk; a 2.0 config stands for the tiny one.
ONE_PER_TRUNK = ["sam2_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"]
MEMORY_FLAGS_21 = {
    "no_obj_embed_spatial",
    "add_tpos_enc_to_obj_ptrs",
    "proj_tpos_enc_in_obj_ptrs",
    "use_signed_tpos_enc_to_obj_ptrs",
}

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def reference_config_file(name: str) -> str:
    family = "sam2.1" if name.startswith("sam2.1") else "sam2"
    return f"configs/{family}/{name}.yaml"


def build_reference(name: str, image_size: int = 1024, *, video: bool = False, seed: int = 0):
    """A reference SAM2Base (or SAM2VideoPredictor) on CPU in eval mode, re-randomized."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    builder = build_sam2_video_predictor if video else build_sam2
    overrides = [f"++model.image_size={image_size}"] if image_size != 1024 else []
    model = builder(
        reference_config_file(name), None, device="cpu", hydra_overrides_extra=overrides
    )
    rerandomize(model, seed)
    return model.eval()


@torch.no_grad()
def rerandomize(model: torch.nn.Module, seed: int) -> None:
    """Gives every parameter and buffer a random value of a realistic scale.

    Weights: N(0, 1/fan_in); norm scales and layer scales: U(0.5, 1.5); biases: N(0, 0.05^2);
    embeddings, position embeddings and the prompt encoder's Gaussian matrix: N(0, 0.5^2)
    (N(0, 1) for the Gaussian matrix, as it is drawn at init).
    """
    gen = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    named = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in named:
        if not tensor.is_floating_point():
            continue
        leaf = name.split(".")[-1]
        shape = tensor.shape
        if "positional_encoding_gaussian_matrix" in name:
            value = torch.randn(shape, generator=gen)
        elif leaf == "gamma" or (leaf == "weight" and tensor.ndim == 1):
            value = torch.rand(shape, generator=gen) + 0.5
        elif leaf == "bias":
            value = torch.randn(shape, generator=gen) * 0.05
        elif leaf == "weight" and tensor.ndim >= 2 and not _is_embedding(modules, name):
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        else:  # embeddings, tokens, pos embeds, no-object / no-memory embeddings, tpos enc
            value = torch.randn(shape, generator=gen) * 0.5
        tensor.copy_(value.to(tensor.dtype))


def _is_embedding(modules: dict[str, torch.nn.Module], name: str) -> bool:
    """Whether parameter `name` is an nn.Embedding table (by owner type, not by name: a name
    test would also catch Linear layers such as `cross_attn_token_to_image.q_proj`)."""
    return isinstance(modules.get(name.rpartition(".")[0]), torch.nn.Embedding)


def numpy_state_dict(model: torch.nn.Module, prefixes: tuple[str, ...] = ("",)) -> dict:
    return {
        k: v.detach().cpu().float().numpy()
        for k, v in model.state_dict().items()
        if k.startswith(prefixes)
    }


IMAGE_PATH_PREFIXES = ("image_encoder.", "sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1.")


@functools.lru_cache(maxsize=4)
def image_path_model(name: str, image_size: int) -> tuple[SAM2, dict]:
    """Our SAM2 module and the expected param shapes of its image path."""
    model = SAM2(get_config(name, image_size=image_size))
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), dummy, method=SAM2.forward_image)
    )["params"]
    # Params created in setup() for other stages may appear too; keep the image path only.
    decoder = shapes["sam_mask_decoder"]
    shapes = {
        "image_encoder": shapes["image_encoder"],
        "sam_mask_decoder": {"conv_s0": decoder["conv_s0"], "conv_s1": decoder["conv_s1"]},
    }
    return model, shapes


def convert_image_path(torch_model: torch.nn.Module, name: str, image_size: int):
    """Converts the reference's image-encoder weights; returns (our module, variables)."""
    model, shapes = image_path_model(name, image_size)
    converted = state_dict_to_params(numpy_state_dict(torch_model, IMAGE_PATH_PREFIXES), shapes)
    # Whatever else setup() declares gets random values: forward_image does not read it.
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    params = jax.jit(model.init, static_argnames="method")(
        jax.random.key(0), dummy, method=SAM2.forward_image
    )["params"]
    params = dict(params)
    params["image_encoder"] = converted["image_encoder"]
    params["sam_mask_decoder"] = {**params["sam_mask_decoder"], **converted["sam_mask_decoder"]}
    return model, {"params": params}


def load_image(name: str, size: int) -> np.ndarray:
    """A real sample image, resized to (size, size), as uint8 (H, W, 3). Skips if absent."""
    import pytest
    from PIL import Image

    path = SHARED_DATA / "images" / name
    if not path.exists():
        pytest.skip(f"sample data not found at {path}")
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


def normalize(image_uint8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 ImageNet-normalized."""
    return ((image_uint8.astype(np.float32) / 255.0) - IMAGENET_MEAN) / IMAGENET_STD


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, -3)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return np.moveaxis(t.detach().float().numpy(), -3, -1)


def relative_max_error(ours, reference) -> float:
    """max |ours - ref| / max |ref|."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))


SAM_HEADS_PREFIXES = (
    "sam_prompt_encoder.",
    "sam_mask_decoder.",
    "obj_ptr_proj.",
    "no_mem_embed",
    "no_obj_ptr",
    "mask_downsample.",
)


@functools.lru_cache(maxsize=4)
def _sam_heads_init_shapes(name: str, image_size: int) -> tuple[SAM2, dict]:
    model = SAM2(get_config(name, image_size=image_size))
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), method=SAM2.initialize_sam_heads)
    )["params"]
    return model, shapes


def sam_heads_model(name: str, image_size: int) -> tuple[SAM2, dict]:
    """Our SAM2 module and the expected param shapes of its SAM heads (+ no_mem_embed)."""
    model, shapes = _sam_heads_init_shapes(name, image_size)
    prefixes = tuple(p.rstrip(".") for p in SAM_HEADS_PREFIXES)
    return model, {k: v for k, v in shapes.items() if k in prefixes}


def convert_sam_heads(torch_model: torch.nn.Module, name: str, image_size: int):
    """Converts the reference's SAM-heads weights strictly; returns (our module, variables).

    Only the SAM-heads subtrees are converted; other params that setup() declares are zeros
    (the SAM-heads methods, `forward_sam_heads`, `use_mask_as_output`, ..., do not read them).
    Zeros rather than a jitted `init`, whose random-number code takes long to compile.
    """
    model, all_shapes = _sam_heads_init_shapes(name, image_size)
    _, shapes = sam_heads_model(name, image_size)
    converted = state_dict_to_params(numpy_state_dict(torch_model, SAM_HEADS_PREFIXES), shapes)
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), all_shapes)
    return model, {"params": {**params, **converted}}


MEMORY_PREFIXES = (
    "memory_encoder.",
    "memory_attention.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_embed_spatial",
    "obj_ptr_tpos_proj.",
)


@functools.lru_cache(maxsize=2)
def cached_reference(name: str, image_size: int):
    """`build_reference(name, image_size)`, built once per test session; do not modify it."""
    return build_reference(name, image_size)


@functools.lru_cache(maxsize=4)
def memory_model(name: str, image_size: int) -> tuple[SAM2, dict]:
    """Our SAM2 module and the expected param shapes of its memory path."""
    model = SAM2(get_config(name, image_size=image_size))
    init = functools.partial(model.init, method=SAM2.initialize_memory)
    shapes = jax.eval_shape(init, jax.random.key(0))["params"]
    prefixes = tuple(p.rstrip(".") for p in MEMORY_PREFIXES)
    return model, {k: v for k, v in shapes.items() if k in prefixes}


def convert_memory(torch_model: torch.nn.Module, name: str, image_size: int) -> dict:
    """Converts the reference's memory-path weights strictly; returns the params tree
    (`memory_encoder`, `memory_attention`, `maskmem_tpos_enc`, ...), usable with the standalone
    `MemoryEncoder` / `MemoryAttention` modules via `{"params": params["memory_encoder"]}`."""
    _, shapes = memory_model(name, image_size)
    return state_dict_to_params(numpy_state_dict(torch_model, MEMORY_PREFIXES), shapes)


def converted_model(torch_model: torch.nn.Module, name: str, image_size: int):
    """The reference's whole state_dict converted strictly into our `SAM2Model`."""
    from sam2_jax.build import SAM2Model
    from sam2_jax.modeling.sam2_base import param_shapes

    config = get_config(name, image_size=image_size)
    module = SAM2(config)
    params = state_dict_to_params(numpy_state_dict(torch_model), param_shapes(module))
    return SAM2Model(config, module, jax.device_put(params))


def closest_cond_frames_without_assert():
    """The reference's `select_closest_cond_frames`, compiled from its own source without
    its assertions (as `python -O` runs it): with `max_cond_frames_in_attn=1` and two or more
    conditioning frames the reference asserts, so this is its code for that setting. Patch it
    over `sam2.modeling.sam2_base.select_closest_cond_frames`."""
    import inspect

    from sam2.modeling import sam2_utils

    source = inspect.getsource(sam2_utils.select_closest_cond_frames)
    namespace = dict(vars(sam2_utils))
    exec(compile(source, sam2_utils.__file__, "exec", optimize=1), namespace)
    return namespace["select_closest_cond_frames"]
