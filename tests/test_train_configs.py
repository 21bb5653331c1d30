"""Every shipped training config loads, names importable task / data factories, and its prompt
and loss options are fields of the objective's configs (a typo fails here, not hours into a run)."""

import pathlib

import pytest

from sam2_jax.config import get_config
from sam2_jax.train.config import load_config
from sam2_jax.train.losses import LossConfig
from sam2_jax.train.prompting import TrainPromptConfig
from sam2_jax.train.task import import_function

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "configs/train").glob("*.py"))
CONFIGS += ["default_model:image", "default_model:video"]  # a config holding phases


def test_configs_are_found():
    assert {"smoke", "default_model", "finetune_tiny"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_complete(name):
    cfg = load_config(name)
    get_config(cfg.model, image_size=cfg.image_size)
    assert callable(import_function(cfg.task)) and callable(import_function(cfg.data))
    TrainPromptConfig(**dict(cfg.prompt_options))
    LossConfig(**dict(cfg.loss_options))
    assert cfg.batch_size >= 1 and cfg.steps >= 1


def test_unknown_phase_is_an_error():
    with pytest.raises(ValueError, match="phases 'image' and 'video', not 'audio'"):
        load_config("default_model:audio")
