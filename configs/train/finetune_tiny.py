"""Fine-tune SAM 2.1 Hiera-T: the B+ recipe (`finetune_base_plus.py`) on the tiny model."""

import pathlib
import runpy

_BASE = runpy.run_path(str(pathlib.Path(__file__).with_name("finetune_base_plus.py")))


def get_config():
    return _BASE["get_config"]("sam2.1_hiera_t")
