"""``bnn.summary`` and ``bnn summary``: every figure checked against arithmetic done by
hand in the test, with Larq's conventions (BN counted as its two folded statistics,
MACs = weight count x output positions, a MAC at the precision of its wider operand)."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from bnn import BConfig, prepare_binary_model
from bnn.cli import main
from bnn.summary import summary
from bnn_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "recipes" / "default.yaml")
KIB = 8 * 1024  # bits


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def small_model() -> nn.Module:
    """Float conv 1->4 3x3 (with bias), BN, binary conv 4->8 3x3 (RSign input, XNOR
    weight, learned output scale), BN, flatten, binary linear 128->16 (sign / sign,
    bias), float linear 16->10. On a 1x8x8 input: 8-3+1 = 6, then 6-3+1 = 4."""
    model = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3),
            bn1=nn.BatchNorm2d(4),
            act1=nn.Hardtanh(),
            conv2=nn.Conv2d(4, 8, 3, bias=False),
            bn2=nn.BatchNorm2d(8),
            act2=nn.Hardtanh(),
            flatten=nn.Flatten(),
            fc1=nn.Linear(8 * 4 * 4, 16),
            fc2=nn.Linear(16, 10),
        )
    )
    return prepare_binary_model(
        model,
        BConfig(activation_pre_process="ste_sign", weight_pre_process="ste_sign"),
        custom_config_layers_name={
            "conv2": BConfig(
                activation_pre_process="input_bias",
                weight_pre_process="xnor_weight",
                activation_post_process="basic_scale",
            ),
            "conv1": BConfig(),
            "fc2": BConfig(),
        },
    )


def test_small_model_every_column():
    result = summary(small_model(), (1, 8, 8))
    rows = {layer["name"]: layer for layer in result.to_dict()["layers"]}
    assert list(rows) == ["conv1", "bn1", "act1", "conv2", "bn2", "act2", "flatten", "fc1", "fc2"]

    def row(
        name, type_, bits, shape, params, trainable, macs, mixed, runtime, note="", binary=False
    ):
        memory = sum(int(b) * n for b, n in params.items())
        return {
            "name": name,
            "type": type_,
            "binary": binary,
            "input_bits": bits,
            "output_shapes": [shape],
            "params": params,
            "trainable_params": trainable,
            "memory_bits": memory,
            "memory_kib": memory / KIB,
            "macs": macs,
            "mixed_precision_macs": mixed,
            "runtime": runtime,
            "runtime_note": note,
        }

    conv1_weight = 4 * 1 * 3 * 3  # 36
    conv2_weight = 8 * 4 * 3 * 3  # 288
    fc1_weight = 128 * 16  # 2048
    fc2_weight = 16 * 10  # 160
    expected = [
        # float conv: weight 36 + bias 4, 36 weights x 6*6 output pixels
        row(
            "conv1",
            "Conv2d",
            32,
            [4, 6, 6],
            {"32": conv1_weight + 4},
            conv1_weight + 4,
            {"32": conv1_weight * 6 * 6},
            False,
            "float",
        ),
        # BN: (shift, mean) and (scale, variance) counted once each: 2 x 4 running statistics
        row("bn1", "BatchNorm2d", 32, [4, 6, 6], {"32": 2 * 4}, 0, {}, False, "float"),
        row("act1", "Hardtanh", 32, [4, 6, 6], {}, 0, {}, False, "float"),
        # binary conv: 288 1-bit weights; RSign bias (4 input channels) and output scale
        # (8 output channels) 32-bit; 288 weights x 4*4 output pixels, both operands 1-bit
        row(
            "conv2",
            "BinaryConv2d",
            1,
            [8, 4, 4],
            {"1": conv2_weight, "32": 4 + 8},
            conv2_weight + 12,
            {"1": conv2_weight * 16},
            False,
            "packed",
            binary=True,
        ),
        row("bn2", "BatchNorm2d", 32, [8, 4, 4], {"32": 2 * 8}, 0, {}, False, "float"),
        row("act2", "Hardtanh", 32, [8, 4, 4], {}, 0, {}, False, "float"),
        row("flatten", "Flatten", 32, [128], {}, 0, {}, False, "float"),
        # binary linear: 2048 1-bit weights, 16 32-bit biases; identity output is packable
        row(
            "fc1",
            "BinaryLinear",
            1,
            [16],
            {"1": fc1_weight, "32": 16},
            fc1_weight + 16,
            {"1": fc1_weight},
            False,
            "packed",
            binary=True,
        ),
        row(
            "fc2",
            "Linear",
            32,
            [10],
            {"32": fc2_weight + 10},
            170,
            {"32": fc2_weight},
            False,
            "float",
        ),
    ]
    assert list(rows.values()) == expected
    # conv1 36 + 4 = 40 bits x 32 = 1280 bits = 0.15625 KiB
    assert rows["conv1"]["memory_kib"] == 0.15625
    # conv2 288 x 1 + 12 x 32 = 672 bits
    assert rows["conv2"]["memory_bits"] == 672


def test_small_model_every_total():
    totals = summary(small_model(), (1, 8, 8)).totals()
    one_bit = 288 + 2048  # conv2 and fc1 weights: 2336
    float_params = 40 + 8 + 12 + 16 + 16 + 170  # conv1, bn1, conv2 extras, bn2, fc1 bias, fc2: 262
    trainable = 40 + (288 + 12) + (2048 + 16) + 170  # 2574; BN statistics are not trained
    memory = one_bit * 1 + float_params * 32  # 2336 + 8384 = 10720 bits
    binary_macs = 288 * 16 + 2048  # conv2 + fc1: 6656
    float_macs = 36 * 36 + 160  # conv1 + fc2: 1456
    assert totals == {
        "total_params": one_bit + float_params,  # 2598
        "trainable_params": trainable,
        "non_trainable_params": 8 + 16,
        "params": {"1": one_bit, "32": float_params},
        "memory_bits": memory,
        "model_size_bytes": memory / 8,  # 1340 B
        "model_size_8bit_float_bytes": (one_bit + float_params * 8) / 8,  # 554 B
        "float32_size_bytes": (one_bit + float_params) * 32 / 8,  # 10392 B
        "compression_ratio": memory / ((one_bit + float_params) * 32),  # 10720 / 83136
        "macs": binary_macs + float_macs,  # 8112
        "macs_by_bits": {"1": binary_macs, "32": float_macs},
        "binarized_mac_ratio": binary_macs / (binary_macs + float_macs),
        "bops": binary_macs,
        "flops": float_macs,
        "ops": binary_macs / 64 + float_macs,  # 104 + 1456 = 1560
        "binarization_degree": binary_macs / (64 * float_macs),  # 104 / 1456
        "mixed_precision_layers": [],
        "uncounted_mac_layers": [],
        "unsupported_runtime_layers": [],
    }
    assert totals["ops"] == 1560 and totals["model_size_bytes"] == 1340


def test_small_model_tables():
    text = str(summary(small_model(), (1, 8, 8)))
    assert "Sequential: input 1x8x8 (per sample)" in text
    assert "conv2     BinaryConv2d" in text and "packed" in text
    assert "1.31" in text  # 10720 bits / 8192 = 1.3086 KiB in the total row
    assert re.search(r"Total params +2,598\n", text)
    assert re.search(r"OPs = BOPs/64 \+ FLOPs +1,560\n", text)
    assert re.search(r"Model size \(8-bit float params\) +554.00 B\n", text)


def binarynet_cifar10() -> nn.Module:
    """BinaryNet's CIFAR-10 network (Hubara et al., 2016): 2x128C3-MP2-2x256C3-MP2-
    2x512C3-MP2-2x1024FC-10, 3x3 convolutions with padding 1, no biases, batch norm after
    every layer (the last included), max pooling before the batch norm. Every layer has
    1-bit weights; every layer but the first has 1-bit inputs: the first one sees the
    real-valued image, as in the paper. The last layer is binary too (the paper's)."""
    layers: list[tuple[str, nn.Module]] = []
    channels = [3, 128, 128, 256, 256, 512, 512]
    for index in range(1, 7):
        layers.append(
            (
                f"conv{index}",
                nn.Conv2d(channels[index - 1], channels[index], 3, padding=1, bias=False),
            )
        )
        if index % 2 == 0:
            layers.append((f"pool{index}", nn.MaxPool2d(2)))
        layers += [(f"bn{index}", nn.BatchNorm2d(channels[index])), (f"act{index}", nn.Hardtanh())]
    layers.append(("flatten", nn.Flatten()))
    features = [512 * 4 * 4, 1024, 1024, 10]
    for index in range(7, 10):
        layers += [
            (f"fc{index}", nn.Linear(features[index - 7], features[index - 6], bias=False)),
            (f"bn{index}", nn.BatchNorm1d(features[index - 6])),
        ]
        if index < 9:
            layers.append((f"act{index}", nn.Hardtanh()))
    return prepare_binary_model(
        nn.Sequential(OrderedDict(layers)),
        BConfig(activation_pre_process="ste_sign", weight_pre_process="ste_sign"),
        custom_config_layers_name={
            "_first_": BConfig(activation_pre_process="identity", weight_pre_process="ste_sign")
        },
    )


def test_binarynet_cifar10_vgg_totals():
    result = summary(binarynet_cifar10(), (3, 32, 32))
    totals = result.totals()
    weights = {  # all 1-bit
        "conv1": 3 * 128 * 9,  # 3,456
        "conv2": 128 * 128 * 9,  # 147,456
        "conv3": 128 * 256 * 9,  # 294,912
        "conv4": 256 * 256 * 9,  # 589,824
        "conv5": 256 * 512 * 9,  # 1,179,648
        "conv6": 512 * 512 * 9,  # 2,359,296
        "fc7": 8192 * 1024,  # 8,388,608
        "fc8": 1024 * 1024,  # 1,048,576
        "fc9": 1024 * 10,  # 10,240
    }
    binary_params = sum(weights.values())
    assert binary_params == 14_022_016
    bn_channels = 2 * 128 + 2 * 256 + 2 * 512 + 2 * 1024 + 10  # 3,850
    float_params = 2 * bn_channels  # 7,700 running statistics
    output_pixels = {  # 32x32 before the first pooling, then 16x16, 8x8; 1 for linear layers
        "conv1": 32 * 32,
        "conv2": 32 * 32,
        "conv3": 16 * 16,
        "conv4": 16 * 16,
        "conv5": 8 * 8,
        "conv6": 8 * 8,
        "fc7": 1,
        "fc8": 1,
        "fc9": 1,
    }
    macs = {name: weights[name] * output_pixels[name] for name in weights}
    float_macs = macs["conv1"]  # 3,538,944: 1-bit weights on the real image count as 32-bit
    binary_macs = sum(macs.values()) - float_macs
    assert binary_macs == 613_427_200 and float_macs == 3_538_944
    assert totals["total_params"] == binary_params + float_params == 14_029_716
    assert totals["trainable_params"] == binary_params
    assert totals["params"] == {"1": binary_params, "32": float_params}
    assert totals["memory_bits"] == binary_params + 32 * float_params  # 14,268,416 bits
    assert totals["model_size_bytes"] == 1_783_552  # 1,741.75 KiB
    assert totals["float32_size_bytes"] == 4 * (binary_params + float_params)
    assert totals["macs"] == 616_966_144
    assert totals["macs_by_bits"] == {"1": binary_macs, "32": float_macs}
    assert totals["bops"] == binary_macs and totals["flops"] == float_macs
    assert totals["ops"] == binary_macs / 64 + float_macs == 13_123_744
    assert totals["mixed_precision_layers"] == ["conv1"]
    assert totals["unsupported_runtime_layers"] == ["conv1"]
    conv1 = result.layers[0]
    assert (conv1.input_bits, conv1.params, conv1.macs) == (32, {1: 3456}, {32: 3_538_944})
    assert "activation_pre_process identity is not packable" in conv1.runtime_note
    assert [x.output_shapes for x in result.layers if x.name in ("pool6", "flatten")] == [
        [[512, 4, 4]],
        [[8192]],
    ]


def test_reused_shared_and_transposed_layers():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(2, 3, 2, stride=2)  # 2x4x4 -> 3x8x8
            self.fc = nn.Linear(8, 8, bias=False)  # acts on the last dimension
            self.tied = nn.Linear(8, 8, bias=False)
            self.tied.weight = self.fc.weight
            self.unused = nn.Linear(4, 2)

        def forward(self, x):
            return self.tied(self.fc(self.fc(self.up(x))))

    net = Net()
    result = summary(net, (2, 4, 4))
    layers = {x.name: x for x in result.layers}
    # transposed conv: 2*3*2*2 = 24 weights, each input pixel (4*4) multiplies the kernel
    assert layers["up"].macs == {32: 24 * 16} and layers["up"].params == {32: 24 + 3}
    # fc called twice on 3x8x8: 64 weights x 3*8 rows per call
    assert layers["fc"].macs == {32: 2 * 64 * 24}
    assert layers["fc"].output_shapes == [[3, 8, 8], [3, 8, 8]]
    # the tied weight is stored once: counted under fc, not again under tied
    assert layers["tied"].params == {} and layers["tied"].macs == {32: 64 * 24}
    assert layers["unused"].output_shapes == [] and layers["unused"].macs == {}
    assert layers["unused"].params == {32: 4 * 2 + 2}
    assert result.layers[-1].name == "unused"  # never called: listed last


def test_undeclared_binarizer_and_unknown_layer():
    class Halve(nn.Module):  # a user binarizer that declares nothing
        def forward(self, x):
            return x / 2

    class Scale(nn.Module):  # per-channel vector: element-wise work, no MACs
        def __init__(self) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.gain

    class Mix(nn.Module):  # a matrix but no MAC rule: not counted
        def __init__(self) -> None:
            super().__init__()
            self.matrix = nn.Parameter(torch.eye(4))

        def forward(self, x):
            return x @ self.matrix

    model = nn.Sequential(nn.Linear(4, 4), Scale(), Mix())
    model = prepare_binary_model(
        model, BConfig(activation_pre_process=Halve, weight_pre_process="ste_sign")
    )
    result = summary(model, (4,))
    binary, scale, mix = result.layers
    assert binary.input_bits == 32 and binary.mixed_macs and binary.macs == {32: 16}
    assert binary.runtime == "unsupported" and "Halve is not packable" in binary.runtime_note
    assert scale.macs == {} and scale.params == {32: 4}
    assert mix.macs is None and result.totals()["uncounted_mac_layers"] == ["2"]
    text = str(result)
    assert "16*" in text and "? MACs of this layer type are not counted" in text


def test_tensor_input_training_mode_and_bad_shapes():
    model = small_model().train()
    model.bn1.eval()
    per_sample = summary(model, torch.zeros(3, 1, 8, 8)).totals()
    assert per_sample == summary(model, [1, 8, 8]).totals()  # figures are per sample
    assert model.training and not model.bn1.training and model.bn2.training
    for bad in ((), (1, 0, 8), (1.0, 8, 8), "1,8,8"):
        with pytest.raises(ConfigError, match="positive integers"):
            summary(model, bad)
    with pytest.raises(
        ConfigError, match=r"forward pass of Sequential on an input of shape \(1, 3, 8, 8\)"
    ):
        summary(model, (3, 8, 8))


def test_cli_summary_of_the_default_recipe(capsys):
    code, out, _ = run(capsys, "summary", DEFAULT)
    assert code == 0
    assert "lenet5: input 1x28x28 (per sample)" in out
    assert "BinaryConv2d" in out and "BinaryLinear" in out and "packed" in out
    # width 32: 1-bit conv2 32*64*25 + fc1 (64*7*7)*256; 32-bit conv1 1*32*25, BN
    # 2*(32+64+256), output scales 64 + 256, fc2 256*10 + 10
    binary = 32 * 64 * 25 + 64 * 7 * 7 * 256
    real = 800 + 2 * (32 + 64 + 256) + (64 + 256) + 2570
    assert f"{binary:,}" in out  # 854,016
    assert f"{real:,}" in out  # 4,394
    assert "Total params" in out and f"{binary + real:,}" in out


def test_cli_summary_of_a_model_name_as_json(capsys):
    code, out, _ = run(capsys, "summary", "lenet5", "--json")
    data = json.loads(out)
    totals = data["totals"]
    assert code == 0 and data["source"] == "lenet5" and data["input_shape"] == [1, 28, 28]
    # float lenet5, width 32, hidden 256: conv1 800, conv2 32*64*25, fc1 (64*7*7)*256,
    # fc2 256*10 + 10, BN 2*(32 + 64 + 256)
    assert totals["total_params"] == 800 + 51_200 + 802_816 + 2_570 + 704 == 858_090
    assert totals["params"] == {"32": 858_090}
    # MACs: conv1 800 x 28*28, conv2 51,200 x 14*14, fc1 802,816, fc2 2,560
    assert totals["macs"] == 627_200 + 10_035_200 + 802_816 + 2_560
    assert totals["bops"] == 0 and totals["binarization_degree"] == 0
    act = next(x for x in data["layers"] if x["name"] == "act")
    assert act["output_shapes"] == [[32, 14, 14], [64, 7, 7], [256]]  # called three times


@pytest.mark.usefixtures("fresh_plugins")
def test_cli_bconfig_and_declared_input_shape(capsys):
    from bnn_core import register_bconfig, register_model

    register_bconfig(
        "sign_all", BConfig(activation_pre_process="ste_sign", weight_pre_process="ste_sign")
    )
    register_model(
        "tiny_cnn", lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()), input_shape=(3, 5, 5)
    )
    code, out, _ = run(capsys, "summary", "tiny-cnn", "--bconfig", "sign_all", "--json")
    totals = json.loads(out)["totals"]
    # 3*2*3*3 = 54 1-bit weights x 3*3 output pixels; the bias (2) stays 32-bit
    assert code == 0 and totals["macs_by_bits"] == {"1": 54 * 9}
    assert totals["params"] == {"1": 54, "32": 2}
    register_model("shapeless", lambda: nn.Linear(2, 2))
    code, _, err = run(capsys, "summary", "shapeless")
    assert code == 2 and "does not declare its input shape" in err and "--input-shape" in err
    code, out, _ = run(capsys, "summary", "shapeless", "--input-shape", "2", "--json")
    assert code == 0 and json.loads(out)["totals"]["macs"] == 4


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lenet"], "Unknown model 'lenet'. Did you mean 'lenet5'?"),
        (["lenet5", "--input-shape", "1,x,28"], "--input-shape must be positive integers"),
        (["lenet5", "--input-shape", "1,0,28"], "--input-shape must be positive integers"),
        (["lenet5", "--input-shape", "3,32,32"], "forward pass of LeNet5"),
        (["missing.yaml"], "does not exist"),
        ([DEFAULT, "--bconfig", "x"], "--bconfig applies to a model name"),
        (["lenet5", "--bconfig", "nope"], "Unknown bconfig 'nope'"),
        ([str(ROOT / "README.md")], "is a file but not a config"),
    ],
)
def test_cli_bad_input_exits_2_with_one_paragraph(capsys, argv, expected):
    code, out, err = run(capsys, "summary", *argv)
    assert code == 2 and out == ""
    assert err.startswith("bnn summary: error: ") and expected in err
    assert "Traceback" not in err and err.count("\n") == 1
