"""Every notebook in notebooks/ runs top to bottom without a cell error, on this interpreter.

The kernel is a throw-away kernel spec pointing at `sys.executable`, found first through
JUPYTER_PATH: a user-level `python3` kernel spec (another interpreter, another environment)
cannot be picked up instead.
"""

import json
import pathlib
import sys
import time

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
KERNEL = "sam2-jax-test"
CELL_TIMEOUT_S = 600  # the first cell that compiles a model is the slow one


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"sam2_jax tests ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    # The test process forces 8 fake CPU devices (conftest); notebooks run as a user's would.
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    return KERNEL


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path, kernel_name: str):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name}: commit notebooks with outputs stripped"
            )
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    print(f"{path.name}: {time.perf_counter() - start:.0f} s")
