"""bnn-runtime as a distribution of its own: installed from the checkout into a fresh
virtual environment without PyTorch, it runs a network exported by bnn and gives exactly
the outputs of the runtime in this environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bnn_runtime
from bnn import BConfig, convert
from bnn.deploy import export
from tests.networks import Everything

ROOT = Path(__file__).resolve().parents[1]

# What pip prints when the package index cannot be reached or has no such package.
UNREACHABLE = (
    "No matching distribution found",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectionError",
)

# Runs inside the fresh environment: the network on the saved input, and what is importable.
PROBE = """
import importlib.util, json, sys
import numpy as np
import bnn_runtime
from bnn_runtime import _library

model, inputs, outputs = sys.argv[1:]
np.save(outputs, bnn_runtime.load(model)(np.load(inputs)))
print(json.dumps({
    "torch": importlib.util.find_spec("torch") is not None,
    "bnn_core": importlib.util.find_spec("bnn_core") is not None,
    "bnn": importlib.util.find_spec("bnn") is not None,
    "compiled": _library.load() is not None,
    "location": bnn_runtime.__file__,
    "loaded": sorted(name for name in ("torch", "bnn_core", "pluggy") if name in sys.modules),
}))
"""


def _exported(directory: Path) -> tuple[Path, np.ndarray]:
    """A network with every float operation and a binary convolution, exported, and an input."""
    torch.manual_seed(0)
    model = Everything()
    model.binary.bconfig = BConfig(
        activation_pre_process="input_bias", weight_pre_process="xnor_weight", pad_value=1
    )
    model = convert(model)
    with torch.no_grad():
        model.norm.running_var.uniform_(0.5, 2)
    model.eval()
    path = directory / "everything.bnnpack"
    export(model, path, (4, 23, 19))
    inputs = np.random.default_rng(3).standard_normal((2, 4, 23, 19)).astype(np.float32)
    return path, inputs


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_CACHE_DIR"] = "1"  # nothing cached outside the temporary directory
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_runtime_installs_alone_and_matches_the_in_tree_runtime(tmp_path: Path) -> None:
    model, inputs = _exported(tmp_path)
    np.save(tmp_path / "inputs.npy", inputs)
    expected = bnn_runtime.load(model)(inputs)

    # pip builds in the source tree (build/, *.egg-info): build a copy instead.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "runtime",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so", "__pycache__"),
    )
    env_dir = tmp_path / "env"
    created = _run([sys.executable, "-m", "venv", str(env_dir)], tmp_path)
    if created.returncode != 0:
        pytest.skip(f"python -m venv is unavailable here: {created.stderr.strip()[-300:]}")
    python = env_dir / "bin" / "python"
    install = _run([str(python), "-m", "pip", "install", "--quiet", str(source)], tmp_path)
    if install.returncode != 0 and any(text in install.stderr for text in UNREACHABLE):
        pytest.skip(
            "pip could not reach the package index for numpy and the build's setuptools: "
            + install.stderr.strip()[-300:]
        )
    assert install.returncode == 0, install.stdout + install.stderr

    outputs = tmp_path / "outputs.npy"
    probe = _run(
        [str(python), "-c", PROBE, str(model), str(tmp_path / "inputs.npy"), str(outputs)],
        tmp_path,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    facts = json.loads(probe.stdout)
    assert not facts["torch"] and not facts["bnn_core"] and not facts["bnn"], facts
    assert facts["loaded"] == [], facts
    assert facts["compiled"], "the C kernels were not built at install"
    assert Path(facts["location"]).is_relative_to(env_dir), facts["location"]
    assert np.array_equal(np.load(outputs), expected)


def test_bnn_runtime_names_are_the_same_modules() -> None:
    """``bnn.runtime.<module>`` imported first, in a fresh process, is ``bnn_runtime.<module>``
    itself (so patches through either name reach the code), with its own spec."""
    code = """
import bnn.runtime.executor as old
from bnn.runtime import kernels as old_kernels
import bnn.runtime
import bnn_runtime, bnn_runtime.executor, bnn_runtime.kernels, bnn_runtime.errors
from bnn.runtime.errors import RuntimeFormatError
assert bnn.runtime is bnn_runtime
assert old is bnn_runtime.executor and old_kernels is bnn_runtime.kernels
assert RuntimeFormatError is bnn_runtime.errors.RuntimeFormatError
assert old.__spec__.name == "bnn_runtime.executor", old.__spec__
assert bnn.runtime.load is bnn_runtime.executor.load
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
