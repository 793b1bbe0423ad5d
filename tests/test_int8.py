"""Int8 float layers: the NumPy reference of ``qconv2d`` and ``qlinear`` equals a direct
integer computation exactly; networks exported with ``float_layers="int8"`` run in the
packed runtime and predict what their float-layer export predicts; the validator refuses
malformed int8 nodes by name; ``bnn export --float-layers int8`` needs ``--calibrate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bnn.cli import main
from bnn.deploy import ExportError, export
from bnn.deploy.int8 import Range, quantize_weight, round_weights
from bnn_core.registries import create_model
from bnn_runtime import int8_reference as ref
from bnn_runtime.errors import RuntimeFormatError
from bnn_runtime.executor import load
from bnn_runtime.format import read
from tests.bnnpack_edit import read_parts, write_parts
from tests.networks import Everything
from tests.packing import randomise

ROOT = Path(__file__).resolve().parents[1]


def direct_conv(q, weight, zero_point, stride, padding, dilation, groups):
    """``sum((q - z) * w)`` of every window by explicit loops over the kernel taps, in
    int64 (q: NHWC steps, weight: [O, C/g, KH, KW] int8)."""
    n, h, w, _ = q.shape
    out_channels, per_group, kh, kw = weight.shape
    centred = np.pad(
        q.astype(np.int64) - zero_point,
        ((0, 0), (padding[0], padding[0]), (padding[1], padding[1]), (0, 0)),
    )
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    acc = np.zeros((n, oh, ow, out_channels), dtype=np.int64)
    per_out = out_channels // groups
    for o in range(out_channels):
        g = o // per_out
        for i in range(kh):
            for j in range(kw):
                rows = centred[
                    :,
                    i * dilation[0] : i * dilation[0] + stride[0] * (oh - 1) + 1 : stride[0],
                    j * dilation[1] : j * dilation[1] + stride[1] * (ow - 1) + 1 : stride[1],
                    g * per_group : (g + 1) * per_group,
                ]
                acc[..., o] += rows @ weight[o, :, i, j].astype(np.int64)
    return acc


CONVS = [
    # in, out, kernel, stride, padding, dilation, groups
    (3, 8, (7, 7), (2, 2), (3, 3), (1, 1), 1),
    (8, 6, (3, 2), (1, 2), (1, 0), (2, 1), 2),
    (5, 5, (3, 3), (1, 1), (1, 1), (1, 1), 5),
    (16, 4, (1, 1), (2, 2), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("case", CONVS)
def test_reference_convolution_equals_direct_integer_sums(case):
    c, o, kernel, stride, padding, dilation, groups = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 11, c)).astype(np.float32) * 3
    weight = rng.integers(-128, 128, (o, c // groups, *kernel), dtype=np.int8)
    weight_scale = rng.uniform(0.001, 0.1, o).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    scale, zero_point = 0.05, 51
    inverse, multiplier = ref.inverse_scale(scale), ref.multipliers(scale, weight_scale)
    y = ref.qconv2d(
        x, weight, multiplier, bias, inverse, zero_point, kernel, stride, padding, dilation, groups
    )
    q = ref.quantize(x, inverse, zero_point)
    acc = direct_conv(q, weight, zero_point, stride, padding, dilation, groups)
    expected = acc.astype(np.float32) * multiplier + bias
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)


def test_reference_linear_equals_direct_integer_sums():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 300)).astype(np.float32)
    weight = rng.integers(-128, 128, (7, 300), dtype=np.int8)
    multiplier = ref.multipliers(0.02, rng.uniform(0.01, 0.1, 7))
    y = ref.qlinear(x, weight, multiplier, None, ref.inverse_scale(0.02), 64)
    q = ref.quantize(x, ref.inverse_scale(0.02), 64).astype(np.int64) - 64
    expected = np.einsum("nf,of->no", q, weight.astype(np.int64))
    np.testing.assert_array_equal(y, expected.astype(np.float32) * multiplier)


def test_quantize_rounds_half_to_even_and_clamps_to_seven_bits():
    x = np.array([0.5, 1.5, 2.5, -0.5, 1000.0, -1000.0, np.inf, -np.inf, np.nan], np.float32)
    q = ref.quantize(x, np.float32(1.0), 10)
    np.testing.assert_array_equal(q, [10, 12, 12, 10, 127, 0, 127, 0, 0])
    assert q.dtype == np.uint8


def test_calibrated_range_puts_zero_on_a_step_and_weights_use_127():
    scale, zero_point = Range(-1.0, 3.0).quantization()
    assert zero_point == round(1.0 / scale) and 0 < scale < 4 / 126
    assert Range(0.5, 2.0).quantization()[1] == 0
    weight, weight_scale = quantize_weight(np.array([[0.5, -1.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(weight, [[64, -127], [0, 0]])
    np.testing.assert_allclose(weight_scale, [1 / 127, 1.0], rtol=1e-6)


def test_compensated_rounding_changes_the_outputs_less_than_rounding_to_nearest():
    rng = np.random.default_rng(2)
    rows = rng.standard_normal((2000, 24)) + rng.standard_normal(24)
    weight = rng.standard_normal((6, 24))
    nearest, scale = quantize_weight(weight)
    compensated = round_weights(weight, scale, rows.T @ rows)
    step = scale.astype(np.float64)[:, None]

    def error(steps):
        return np.linalg.norm(rows @ (weight - steps * step).T)

    assert compensated.dtype == np.int8 and np.abs(compensated.astype(int)).max() <= 127
    assert error(compensated) < 0.9 * error(nearest)


NETWORKS = {
    "lenet5": (lambda: randomise(create_model("lenet5", binarize=True)), (1, 28, 28), 2),
    "bireal": (
        lambda: randomise(create_model("resnet8_bireal", binarize=True, width=16)),
        (1, 28, 28),
        4,
    ),
    "everything": (lambda: Everything(), (4, 24, 24), 5),
}


@pytest.mark.parametrize("mode", ["int8", "int8-all"])
@pytest.mark.parametrize("name", NETWORKS)
def test_int8_export_runs_and_agrees_with_the_float_layer_export(name, mode, tmp_path):
    build, shape, layers = NETWORKS[name]
    torch.manual_seed(0)
    model = build().eval()
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.randn(8, *shape, generator=generator) for _ in range(4)]
    export(model, tmp_path / "f.bnnpack", shape)
    result = export(
        model, tmp_path / "q.bnnpack", shape, float_layers=mode, calibration=calibration
    )
    pack = read(tmp_path / "q.bnnpack")
    stems = [node for node in pack.graph.nodes if pack.graph.input_name in node.inputs]
    if mode == "int8":  # the stem reads the network's input and stays float
        assert [node.op for node in stems] == ["conv2d"]
        layers -= 1
    assert result.int8_layers == layers
    float_ops = [node.name for node in pack.graph.nodes if node.op in ("conv2d", "linear")]
    assert float_ops == ([stems[0].name] if mode == "int8" else [])
    weights = [node.tensors["weight"] for node in pack.graph.nodes if node.op[0] == "q"]
    assert len(weights) == layers and all(pack.specs[w][0] == "int8" for w in weights)
    assert pack.metadata["float_layers"] == mode
    x = torch.randn(64, *shape, generator=generator).numpy()
    floats, ints = load(tmp_path / "f.bnnpack")(x), load(tmp_path / "q.bnnpack")(x)
    assert np.mean(floats.argmax(1) == ints.argmax(1)) >= 0.9
    assert not np.array_equal(floats, ints)


def test_int8_export_needs_calibration_batches(tmp_path):
    model = create_model("lenet5", binarize=True)
    with pytest.raises(ExportError, match="calibration"):
        export(model, tmp_path / "q.bnnpack", (1, 28, 28), float_layers="int8")
    with pytest.raises(ExportError, match="at least one batch"):
        export(model, tmp_path / "q.bnnpack", (1, 28, 28), float_layers="int8", calibration=[])
    with pytest.raises(ExportError, match="float, int8 or int8-all"):
        export(model, tmp_path / "q.bnnpack", (1, 28, 28), float_layers="int4")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "lenet.bnnpack"
    torch.manual_seed(0)
    model = randomise(create_model("lenet5", binarize=True, width=8, hidden=16))
    calibration = [torch.randn(2, 1, 28, 28)]
    export(model, path, (1, 28, 28), float_layers="int8-all", calibration=calibration)
    return path


def _edited(path, tmp_path, edit):
    header, data = read_parts(path)
    node = next(n for n in header["graph"]["nodes"] if n["op"] == "qconv2d")
    edit(header, node)
    return write_parts(tmp_path / "edited.bnnpack", header, data)


def _tensor(header, node, role):
    return header["tensors"][node["tensors"][role]]


EDITS = {
    "zero point over 127": (
        lambda h, n: n["attrs"].update(input_zero_point=128),
        "'input_zero_point' must be an int in [0, 127]",
    ),
    "zero scale": (lambda h, n: n["attrs"].update(input_scale=0.0), "'input_scale' must be"),
    "scale a string": (lambda h, n: n["attrs"].update(input_scale="1"), "'input_scale' must be"),
    "no weight scale": (lambda h, n: n["tensors"].pop("weight_scale"), "weight_scale"),
    "weight stored as floats": (
        lambda h, n: n["tensors"].update(weight=n["tensors"]["weight_scale"]),
        "tensor 'weight' ('conv1.weight.scale') must be int8",
    ),
    "weight scale stored as int8": (
        lambda h, n: _tensor(h, n, "weight_scale").update(
            dtype="int8", nbytes=_tensor(h, n, "weight_scale")["nbytes"] // 4
        ),
        "tensor 'weight_scale'",
    ),
    "too deep": (
        lambda h, n: n["attrs"].update(kernel_size=[300, 300], padding=[200, 200]),
        "int32 accumulator",
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_validator_refuses_malformed_int8_nodes(edit, int8_file, tmp_path):
    change, message = EDITS[edit]
    path = _edited(int8_file, tmp_path, change)
    with pytest.raises(RuntimeFormatError, match="qconv2d") as info:
        read(path)
    assert message in str(info.value)


def test_cli_int8_export_needs_calibrate_and_calibrates_on_the_recipe(tmp_path, capsys):
    out = tmp_path / "m.bnnpack"
    command = ["export", "lenet5", "-o", str(out), "--float-layers", "int8"]
    assert main(command) == 2
    assert "--calibrate" in capsys.readouterr().err
    recipe = str(ROOT / "recipes" / "default.yaml")
    assert main([*command, "--calibrate", recipe]) == 0
    printed = capsys.readouterr().out
    assert "1 float convolution/linear layer stored as int8" in printed
    assert "the stem float" in printed
    assert {n.op for n in read(out).graph.nodes} >= {"conv2d", "qlinear"}
    command[-1] = "int8-all"
    assert main([*command, "--calibrate", recipe]) == 0
    assert "2 float convolution/linear layers stored as int8" in capsys.readouterr().out
    assert {n.op for n in read(out).graph.nodes} >= {"qconv2d", "qlinear"}


def test_bench_compares_the_int8_export_with_the_float_layer_export(tmp_path, capsys):
    from bnn.deploy.int8 import recipe_batches

    recipe = ROOT / "recipes" / "default.yaml"
    torch.manual_seed(0)
    model = randomise(create_model("lenet5", binarize=True))
    float_file, int8_file = tmp_path / "f.bnnpack", tmp_path / "q.bnnpack"
    export(model, float_file, (1, 28, 28), source={"model": {"name": "lenet5", "options": {}}})
    calibration = [torch.from_numpy(b) for b in recipe_batches(recipe, (1, 28, 28))]
    export(model, int8_file, (1, 28, 28), float_layers="int8", calibration=calibration)
    command = ["bench", str(float_file), "--rounds", "1", "--warmup", "0", "--peers", "torch"]
    assert main([*command, "--compare", str(int8_file), "--calibrate", str(recipe), "--json"]) == 0
    peers = json.loads(capsys.readouterr().out)["peers"]["peers"]
    compared = next(p for p in peers if p["name"] == "packed:q.bnnpack")
    assert compared["ms"] > 0 and compared["max_abs_diff"] > 0
    assert compared["top1_agreement"] >= 0.75  # the same weights, the int8 float layers
    wrong = tmp_path / "other.bnnpack"
    export(create_model("lenet5", binarize=True, in_channels=3), wrong, (3, 28, 28))
    assert main([*command, "--compare", str(wrong)]) == 2
    assert "compare exports of the same model" in capsys.readouterr().err
