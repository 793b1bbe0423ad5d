"""Export to .bnnpack and the packed runtime: the runtime computes what the
fake-binarized PyTorch model computes (zoo models, binarization methods, a trained
LeNet-5 on the embedded Fashion-MNIST test split); unsupported binarizers and
operations are refused by name; the file size reconciles with ``bnn summary``.

Tolerance (tests/packing.py): logits within 1e-4 x (1 + the largest logit magnitude),
identical predicted classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnn import BConfig, prepare_binary_model
from bnn.deploy import ExportError, export
from bnn.deploy.size import check_size
from bnn_core.binarizer import Binarizer, ValueSet
from bnn_core.lowering import SIGN, WEIGHT_SIGN
from bnn_core.registries import create_model, register_lowering
from bnn_runtime.executor import load
from tests.packing import assert_agree, randomise


class TorchSign(Binarizer):
    """Declares itself packable and registers a sign's lowering, but keeps zeros
    (``torch.sign``): the probe catches it."""

    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


class Ternary(Binarizer):
    """Declares itself packable and registers a weight sign's lowering, but gives three
    weight values."""

    packable = True

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w.abs() < w.abs().mean(), 0.0, torch.sign(w))


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test builds its models from the same random state, whatever ran before:
    the runtime and PyTorch agree up to float rounding, and where rounding puts a
    binary layer's input exactly on its threshold the two may take different signs
    (see tests/packing.py), so the weights must not depend on the test order."""
    torch.manual_seed(0)


def run_both(model: nn.Module, path, shape, batch: int = 3):
    """Export ``model``; run the file and the model on the same random batch."""
    result = export(model, path, shape)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    return expected, load(path)(x.numpy()), result


ZOO = [
    ("lenet5", (1, 28, 28)),
    ("binarynet_mlp", (1, 28, 28)),
    ("resnet8_bireal", (1, 28, 28)),
    ("resnet18_cifar", (3, 32, 32)),
    ("resnet20_cifar", (3, 32, 32)),
    ("vgg_small", (3, 32, 32)),
    ("resnet18_bireal", (3, 48, 48)),
    ("resnet18_reactnet", (3, 48, 48)),
    ("reactnet_a", (3, 32, 32)),
]


@pytest.mark.parametrize(("name", "shape"), ZOO, ids=[name for name, _ in ZOO])
def test_zoo_model_runs_as_exported(name, shape, tmp_path):
    model = randomise(create_model(name, binarize=True))
    expected, got, result = run_both(model, tmp_path / f"{name}.bnnpack", shape)
    assert_agree(expected, got)
    check = check_size(model, shape, result)
    assert check.matches and check.added_bytes == 0


@pytest.mark.parametrize(
    "method", ["bnn", "xnor", "bireal", "react", "xnorpp", "recu", "irnet", "fda", "dorefa1"]
)
def test_binarization_methods_run_as_exported(method, tmp_path):
    model = randomise(create_model("lenet5", binarize=method, width=16, hidden=64))
    expected, got, _ = run_both(model, tmp_path / "m.bnnpack", (1, 28, 28))
    assert_agree(expected, got)


def test_rprelu_bireal_and_pad_value(tmp_path):
    model = create_model("resnet8_bireal", rprelu=True, width=16)
    model = prepare_binary_model(
        model,
        BConfig(
            activation_pre_process="input_bias", weight_pre_process="xnor_weight", pad_value=-1
        ),
        custom_config_layers_name={"_first_": BConfig(), "_last_": BConfig()},
        ignore_layers_name=["$.*downsample.*$"],
    )
    expected, got, _ = run_both(randomise(model), tmp_path / "r.bnnpack", (1, 28, 28))
    assert_agree(expected, got)


def test_bireal_with_pooled_stem(tmp_path):
    model = randomise(create_model("resnet8_bireal", binarize=True, width=16, stem_pool=True))
    expected, got, _ = run_both(model, tmp_path / "p.bnnpack", (1, 28, 28))
    assert_agree(expected, got)


def test_binary_layers_feeding_binary_layers_exchange_packed_bits(tmp_path):
    model = randomise(create_model("binarynet_mlp", binarize=True, hidden=(256, 256, 256)))
    expected, got, _ = run_both(model, tmp_path / "mlp.bnnpack", (1, 28, 28))
    assert_agree(expected, got)
    network = load(tmp_path / "mlp.bnnpack")
    assert network.packed_edges() == [("fc2", "fc3")]
    ops = [node.op for node in network.nodes]
    assert "hardtanh" in ops and ops.count("channel_affine") == 0  # bn folded, clamps dropped


def test_float16_file_is_smaller_and_agrees(tmp_path):
    model = randomise(create_model("resnet8_bireal", binarize=True, width=16))
    shape = (1, 28, 28)
    single = export(model, tmp_path / "f32.bnnpack", shape)
    half = export(model, tmp_path / "f16.bnnpack", shape, float_dtype="float16")
    assert half.tensor_bytes < single.tensor_bytes
    assert check_size(model, shape, half).matches
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x).numpy()
    got = load(tmp_path / "f16.bnnpack")(x.numpy())
    assert np.abs(got - expected).max() <= 0.05 * (1 + np.abs(expected).max())


def test_size_reconciles_with_summary(tmp_path):
    """Folding a batch norm into a float convolution merges its two statistics and the
    convolution's bias slot into one bias; XNOR-Net's derived alpha moves into the
    batch norm after the pooling; basic_scale's alpha merges with the batch norm."""
    bireal = create_model("resnet18_bireal", binarize=True)
    check = check_size(bireal, (3, 32, 32), export(bireal, tmp_path / "b.bnnpack", (3, 32, 32)))
    assert check.matches and check.merged_bytes == 4 * (64 + 128 + 256 + 512)
    assert check.metadata_bytes < 0.01 * check.file_bytes
    lenet = create_model("lenet5", binarize=True)
    check = check_size(lenet, (1, 28, 28), export(lenet, tmp_path / "l.bnnpack", (1, 28, 28)))
    assert check.matches and check.merged_bytes == check.added_bytes == 0
    assert check.tensor_bytes == check.predicted_bytes
    scaled = prepare_binary_model(
        create_model("lenet5"),
        BConfig(
            activation_pre_process="ste_sign",
            weight_pre_process="xnor_weight",
            activation_post_process="basic_scale",
        ),
        custom_config_layers_name={"_first_": BConfig(), "_last_": BConfig()},
    )
    result = export(scaled, tmp_path / "s.bnnpack", (1, 28, 28))
    check = check_size(scaled, (1, 28, 28), result)
    assert check.matches and check.merged_bytes == 4 * 256  # fc1's alpha met bn3
    unfolded = prepare_binary_model(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.Linear(100, 10)),
        BConfig(activation_pre_process="ste_sign", weight_pre_process="xnor_weight"),
    )
    result = export(unfolded, tmp_path / "u.bnnpack", (1, 28, 28))
    check = check_size(unfolded, (1, 28, 28), result)
    assert check.matches and check.added_bytes == 4 * (100 + 10)
    assert (
        check.rounding_bytes == 0 and result.file_bytes == (tmp_path / "u.bnnpack").stat().st_size
    )


def test_trained_lenet_on_the_fashion_mnist_test_split(tmp_path):
    from bnn_datasets.idx import fashion_mnist

    torch.manual_seed(0)
    model = prepare_binary_model(
        create_model("lenet5", width=16, hidden=128),
        BConfig(
            activation_pre_process="ste_sign",
            weight_pre_process="xnor_weight",
            activation_post_process="basic_scale",
        ),
        custom_config_layers_name={"_first_": BConfig(), "_last_": BConfig()},
    )
    train = fashion_mnist(split="train")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    model.train()
    for step in range(30):
        chosen = order[step * 64 : (step + 1) * 64]
        images = train.transform(train.images[chosen])
        loss = nn.functional.cross_entropy(model(images), train.targets[chosen])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = fashion_mnist(split="test")
    images = test.transform(test.images)
    labels = test.targets.numpy()
    assert len(images) == 2000
    export(model, tmp_path / "lenet.bnnpack", (1, 28, 28))
    with torch.no_grad():
        expected = model(images).numpy()
    got = load(tmp_path / "lenet.bnnpack")(images.numpy())
    assert_agree(expected, got)
    assert (expected.argmax(1) == labels).mean() > 0.5  # it did learn something


@pytest.mark.parametrize(
    ("bconfig", "fragment"),
    [
        (
            {"activation_pre_process": "scaled_input", "weight_pre_process": "xnor_weight"},
            "activation_pre_process scaled_input is not packable",
        ),
        (
            {"activation_pre_process": "ste_sign", "weight_pre_process": "dorefa"},
            "weight_pre_process dorefa is not packable",
        ),
        (
            {"activation_pre_process": "adabin_input", "weight_pre_process": "adabin_weight"},
            "activation_pre_process adabin_input is not packable",
        ),
        (
            {
                "activation_pre_process": {"name": "ste_sign", "sign_of_zero": 0},
                "weight_pre_process": "ste_sign",
            },
            "activation_pre_process ste_sign is not packable",
        ),
        (
            {"activation_pre_process": TorchSign, "weight_pre_process": "ste_sign"},
            "activation_pre_process TorchSign cannot run in the packed runtime: it maps some "
            "inputs to 0",
        ),
        (
            {"activation_pre_process": "ste_sign", "weight_pre_process": Ternary},
            "weight_pre_process Ternary gives output channel",
        ),
    ],
    ids=["scaled_input", "dorefa", "adabin", "sign_of_zero", "undeclared_ternary", "ternary"],
)
def test_unsupported_binarizer_is_refused_naming_the_layer(
    bconfig, fragment, tmp_path, fresh_plugins
):
    register_lowering(TorchSign, SIGN)
    register_lowering(Ternary, WEIGHT_SIGN)
    model = create_model("lenet5", binarize=bconfig)
    with pytest.raises(ExportError) as error:
        export(model, tmp_path / "x.bnnpack", (1, 28, 28))
    assert "layer conv2" in str(error.value) and fragment in str(error.value)
    assert not (tmp_path / "x.bnnpack").exists()


class _Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


def test_unsupported_operations_are_refused_naming_the_node(tmp_path):
    with pytest.raises(ExportError, match=r"node sigmoid \(torch.*sigmoid\) is not supported"):
        export(_Gelu(), tmp_path / "x.bnnpack", (1, 8, 8))
    with pytest.raises(ExportError, match=r"layer 1 \(GELU\) is not supported"):
        export(nn.Sequential(nn.Flatten(), nn.GELU()), tmp_path / "x.bnnpack", (4,))
    norm = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(ExportError, match=r"layer 1 .*no running statistics"):
        export(norm, tmp_path / "x.bnnpack", (1, 8, 8))
