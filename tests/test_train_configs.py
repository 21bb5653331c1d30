"""Every shipped training config loads, names importable task / data factories, and its prompt
and loss options are fields of the objective's configs (a typo fails here, not hours into a run).
Overrides and config values are checked against the fields' types and ranges, in one line
naming the key and the value, before anything is built."""

import pathlib
import subprocess
import sys
import time

import pytest

from sam2_jax import cli
from sam2_jax.config import get_config
from sam2_jax.train.config import ConfigError, apply_overrides, load_config
from sam2_jax.train.losses import LossConfig
from sam2_jax.train.prompting import TrainPromptConfig
from sam2_jax.train.task import import_function, options, sam2_task

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


# ------------------------------------------------------------------ overrides, validated


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_size=abc", "batch_size='abc': expected an integer, got str"),
        ("steps=1.5", "steps=1.5: expected an integer, got float"),
        ("remat=1", "remat=1: expected True or False, got int"),
        ("optim.base_lr=abc", "optim.base_lr='abc': expected a number, got str"),
        ("stop_at_step=x", "stop_at_step='x': expected an integer or None, got str"),
        ("data_options=(1, 2)", "data_options=(1, 2): expected a tuple of (name, value) pairs"),
        ("batchsize=4", "unknown config key 'batchsize': did you mean batch_size?"),
        ("optim.base_lrr=1e-4", "unknown config key 'optim.base_lrr': did you mean optim.base_lr?"),
        ("optim.zzz=1", "unknown config key 'optim.zzz'; optim has b1, b2, base_lr, clip_norm"),
        ("zzz=1", "unknown config key 'zzz'; the config has batch_size, checkpoint, "),
        ("optim=1", "config key 'optim' is a group; set one of optim.base_lr, optim.vision_lr"),
        ("checkpoint.every_steps=0", "checkpoint.every_steps=0: must be >= 1"),
        ("checkpoint.keep=-1", "checkpoint.keep=-1: must be >= 1"),
        ("steps=0", "steps=0: must be >= 1"),
        ("log_every=0", "log_every=0: must be >= 1"),
        ("stop_at_step=0", "stop_at_step=0: must be >= 1 (or None: run all steps)"),
        ("mesh.data=0", "mesh.data=0: must be >= 1, or -1"),
        ("optim.warmup_steps=-1", "optim.warmup_steps=-1: must be >= 0"),
        ("optim.clip_norm=0", "optim.clip_norm=0.0: must be > 0 (or None: no clip)"),
        ("optim.schedule=linear", "optim.schedule='linear': must be 'cosine' or 'constant'"),
        ("compute_dtype=float64", "compute_dtype='float64': must be one of float32, bfloat16"),
        ("steps", "override 'steps' is not key=value (e.g. steps=200)"),
        ("optim.trainable=()", "optim.trainable=(): must name at least one pattern"),
        ("optim.trainable=(1,)", "optim.trainable=(1,): expected a tuple of texts, got tuple"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_key_and_value(override, message):
    with pytest.raises(ConfigError) as caught:
        apply_overrides(load_config("default_model:image"), [override])
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_overrides_take_the_type_of_their_field():
    cfg = apply_overrides(
        load_config("smoke"),
        ["optim.base_lr=1", "workdir=2024", "init_checkpoint=None", "optim.clip_norm=None"]
        + ["data_options=[('num_threads', 0)]", "remat=True", "stop_at_step=5"],
    )
    assert cfg.optim.base_lr == 1.0 and isinstance(cfg.optim.base_lr, float)
    assert cfg.workdir == "2024" and cfg.init_checkpoint is None and cfg.optim.clip_norm is None
    assert cfg.data_options == (("num_threads", 0),) and cfg.remat is True
    assert cfg.stop_at_step == 5
    for text, patterns in (
        ("sam_mask_decoder/*", ("sam_mask_decoder/*",)),
        ("sam_mask_decoder/*, memory_attention/*", ("sam_mask_decoder/*", "memory_attention/*")),
        ("('a/*', 'b')", ("a/*", "b")),
    ):
        assert apply_overrides(cfg, [f"optim.trainable={text}"]).optim.trainable == patterns


def test_a_misspelt_objective_option_names_the_close_field():
    """prompt_options / loss_options name fields of the SAM 2 objective's configs; the task
    checks them before it makes any params."""
    with pytest.raises(ConfigError) as caught:
        options(TrainPromptConfig, (("num_correction_pt", 1),), "prompt_options")
    assert str(caught.value) == (
        "prompt_options: unknown TrainPromptConfig field 'num_correction_pt': did you mean "
        "num_correction_pt_per_frame?"
    )
    with pytest.raises(ConfigError, match=r"^loss_options: unknown LossConfig field 'zzz'; Loss"):
        sam2_task(apply_overrides(load_config("smoke"), ["loss_options=(('zzz', 1),)"]))
    assert options(LossConfig, (("weight_mask", 1.0),), "loss_options").weight_mask == 1.0


def test_a_config_file_with_a_bad_value_is_refused_when_loaded(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(
        "from sam2_jax.train.config import CheckpointConfig, TrainConfig\n"
        "def get_config():\n"
        "    return TrainConfig(checkpoint=CheckpointConfig(every_steps=0))\n"
    )
    with pytest.raises(ConfigError, match=r"^checkpoint.every_steps=0: must be >= 1$"):
        load_config(str(path))


def test_train_cli_refuses_bad_overrides_before_building_anything(tmp_path, capsys):
    """One line and exit status 2, with no workdir made; the subprocess shows the real
    stderr and that the refusal costs only the CLI's start-up (building and compiling the
    model would take minutes)."""
    workdir = tmp_path / "run"
    base = ["train", "--config", "default_model:image", "--workdir", str(workdir)]
    for override, message in (
        ("checkpoint.every_steps=0", "checkpoint.every_steps=0: must be >= 1"),
        ("batchsize=4", "unknown config key 'batchsize': did you mean batch_size?"),
    ):
        start = time.perf_counter()
        with pytest.raises(SystemExit) as caught:
            cli.main([*base, override])
        assert caught.value.code == 2 and time.perf_counter() - start < 5
        assert capsys.readouterr().err == f"sam2-jax train: error: {message}\n"
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", "--config", "no_such_config"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith("sam2-jax train: error: training config 'no_such")

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sam2_jax.cli", *base, "batch_size=abc"],
        capture_output=True,
        cwd=pathlib.Path(__file__).parents[1],
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        "sam2-jax train: error: batch_size='abc': expected an integer, got str"
    ]
    assert elapsed < 30 and not workdir.exists()
