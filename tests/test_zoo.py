"""The model zoo: every built-in model builds, binarizes as it declares, trains a step and
matches the published size and cost of its architecture; the torchvision bridge lists
torchvision's classification models without importing torch and builds them on demand.

Published figures: parameter counts of the real-valued ResNets (He et al., 2016;
torchvision), ReActNet-A's 29.3M parameters as later comparisons list it, and the BOPs
and FLOPs of the ImageNet comparison tables of Bi-Real Net (Liu et al., ECCV 2018) and
ReActNet (Liu et al., ECCV 2020), where OPs = BOPs / 64 + FLOPs.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import bnn_core
from bnn.cli import main
from bnn.recipe import load_recipe
from bnn_core.config import binarization_for
from bnn_core.errors import BnnError, ConfigError
from bnn_core.layers import is_binary_layer
from bnn_core.registries import REGISTRIES, layer_map
from bnn_models.blocks import RPReLU
from bnn_models.plugin import MODELS, TRAINED
from bnn_models.torchvision_bridge import classification_models, registered_builders

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"
BIREAL_DOWNSAMPLES = [f"layer{i}.0.downsample.conv" for i in (2, 3, 4)]

# name: (options and input for a quick step, layers kept float, binary layer count)
ZOO = {
    "lenet5": ({}, (1, 28, 28), ["conv1", "fc2"], 2),
    "binarynet_mlp": ({"hidden": [64, 32, 16]}, (1, 28, 28), ["fc1", "fc4"], 2),
    "resnet8_bireal": (
        {"width": 8},
        (1, 28, 28),
        ["stem.conv", "layer2.0.downsample.conv", "layer3.0.downsample.conv", "fc"],
        6,
    ),
    "resnet18_cifar": ({}, (3, 16, 16), ["stem.conv", *BIREAL_DOWNSAMPLES, "fc"], 16),
    "resnet20_cifar": ({}, (3, 16, 16), ["stem.conv", "fc"], 18),
    "vgg_small": ({}, (3, 32, 32), ["conv1", "fc"], 5),
    "resnet18_bireal": ({}, (3, 32, 32), ["stem.conv", *BIREAL_DOWNSAMPLES, "fc"], 16),
    "resnet34_bireal": ({}, (3, 32, 32), ["stem.conv", *BIREAL_DOWNSAMPLES, "fc"], 32),
    "resnet18_reactnet": ({}, (3, 32, 32), ["stem.conv", *BIREAL_DOWNSAMPLES, "fc"], 16),
    "reactnet_a": ({}, (3, 32, 32), ["stem.conv", "fc"], 26),
}


def binarizable(model: nn.Module) -> list[str]:
    mapping = layer_map()
    return [n for n, m in model.named_modules() if type(m) in mapping or is_binary_layer(m)]


def test_the_zoo_table_covers_every_registered_model():
    registered = {n for n in bnn_core.list_models() if not n.startswith("torchvision/")}
    assert registered == set(MODELS) | set(TRAINED)
    assert set(MODELS) == set(ZOO)  # the trained models: tests/test_shipped_model.py


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_binarizes_as_declared_and_trains_a_step(name):
    options, shape, float_layers, binary_count = ZOO[name]
    torch.manual_seed(0)
    model = bnn_core.create_model(name, binarize=True, num_classes=3, **options)

    layers = binarizable(model)
    binary = [n for n, m in model.named_modules() if is_binary_layer(m)]
    kept = [n for n in binarizable(model) if n not in binary]
    assert kept == float_layers
    assert len(binary) == binary_count == len(layers) - len(float_layers)

    x = torch.randn(2, *shape)
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.square().mean().backward()
    for layer in binary:
        grad = model.get_submodule(layer).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, layer


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_registers_its_input_shape(name):
    entry = REGISTRIES["model"].entry(name)
    assert entry.metadata["input_shape"] == MODELS[name][1]


def parameters_on_meta(builder, **options) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in builder(**options).parameters())


def prelu_parameters(model_name: str) -> int:
    with torch.device("meta"):
        model = bnn_core.create_model(model_name)
    return sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, nn.PReLU | RPReLU)
        for p in m.parameters()
    )


@pytest.mark.parametrize(
    ("name", "reference", "published_millions"),
    [
        ("resnet18_bireal", torchvision.models.resnet18, 11.7),
        ("resnet34_bireal", torchvision.models.resnet34, 21.8),
        ("resnet18_reactnet", torchvision.models.resnet18, 11.7),
    ],
)
def test_imagenet_resnets_have_the_parameters_of_their_real_valued_resnet(
    name, reference, published_millions
):
    """One block per convolution and an average-pooled 1x1 shortcut keep every weight of
    torchvision's ResNet; the only additions are the PReLU / RPReLU parameters."""
    count = parameters_on_meta(bnn_core.get_model(name))
    assert count - prelu_parameters(name) == parameters_on_meta(reference)
    assert round(count / 1e6, 1) == published_millions


def test_prelu_adds_one_slope_per_channel_and_rprelu_three():
    assert prelu_parameters("resnet18_bireal") == 4 * (64 + 128 + 256 + 512)
    assert prelu_parameters("resnet18_reactnet") == 3 * 4 * (64 + 128 + 256 + 512)


@pytest.mark.parametrize(
    ("name", "published_millions", "digits", "real_valued"),
    [
        ("reactnet_a", 29.3, 1, None),
        # The CIFAR ResNets without their PReLUs are the usual real-valued ones.
        ("resnet18_cifar", 11.2, 1, 11_173_962),
        ("resnet20_cifar", 0.27, 2, 269_722),
    ],
)
def test_parameter_counts_match_the_published_figures(
    name, published_millions, digits, real_valued
):
    count = parameters_on_meta(bnn_core.get_model(name))
    assert round(count / 1e6, digits) == published_millions
    if real_valued is not None:
        assert count - prelu_parameters(name) == real_valued


def test_vgg_small_parameters_by_hand():
    widths = [3, 128, 128, 256, 256, 512, 512]
    convs = sum(9 * a * b for a, b in itertools.pairwise(widths))
    batch_norms = 2 * sum(widths[1:])
    classifier = 512 * 4 * 4 * 10 + 10
    assert parameters_on_meta(bnn_core.get_model("vgg_small")) == convs + batch_norms + classifier
    hidden = 512 * 4 * 4 * 1024 + 1024 * 1024 + 2 * 2 * 1024 + 1024 * 10 + 10
    with_hidden = parameters_on_meta(bnn_core.get_model("vgg_small"), hidden=(1024, 1024))
    assert with_hidden == convs + batch_norms + hidden


def macs_at_224(name: str) -> tuple[int, int]:
    """(binary, float) multiply-accumulates of one 224x224 image, split by the declared
    binarization; computed on the meta device from each layer's output shape."""
    builder = bnn_core.get_model(name)
    counts: dict[str, int] = {}

    def count(layer_name):
        def hook(module, args, out):
            positions = out[0, 0].numel() if out.dim() > 2 else 1
            counts[layer_name] = module.weight.numel() * positions

        return hook

    with torch.device("meta"):
        model = builder()
        for layer_name, module in model.named_modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.register_forward_hook(count(layer_name))
        model(torch.empty(1, 3, 224, 224))
    plans = binarization_for(builder, True).plan(model)
    binary = sum(counts[p.name] for p in plans if p.binarize)
    return binary, sum(counts[p.name] for p in plans if not p.binarize)


@pytest.mark.parametrize(
    ("name", "bops", "flops", "ops"),
    [
        ("resnet18_bireal", 1.68e9, 1.39e8, 1.63e8),
        ("resnet34_bireal", 3.53e9, 1.39e8, 1.93e8),
        ("reactnet_a", 4.82e9, 0.12e8, 0.87e8),
    ],
)
def test_operation_counts_match_the_papers_tables(name, bops, flops, ops):
    binary, real = macs_at_224(name)
    assert binary == pytest.approx(bops, rel=0.01)
    assert real == pytest.approx(flops, rel=0.02)
    assert binary / 64 + real == pytest.approx(ops, rel=0.01)


def test_seed_resnet18_signature_and_activations():
    model = bnn_core.create_model("resnet18", num_classes=1000, rprelu=True)
    assert isinstance(model.layer1[0].act, RPReLU) and model.fc.out_features == 1000
    assert isinstance(bnn_core.create_model("resnet18").layer4[3].act, nn.PReLU)
    assert isinstance(bnn_core.create_model("resnet18_reactnet").layer2[0].act, RPReLU)


def test_reactnet_a_duplicates_the_input_where_the_width_doubles():
    model = bnn_core.create_model("reactnet_a", num_classes=5)
    widening = [b for b in model.features if b.conv1x1.out_channels == 2 * b.conv1x1.in_channels]
    assert len(widening) == 5
    strided = [b for b in model.features if b.conv3x3.stride == (2, 2)]
    assert len(strided) == 4 and all(b.pool is not None for b in strided)
    block = model.features[0].eval()
    with torch.no_grad():
        block.conv1x1.weight.zero_()
        x = torch.randn(1, 32, 4, 4)
        middle = block.act3x3(block.bn3x3(block.conv3x3(x)) + x)
        out = block(x)
    expected = block.act1x1(block.bn1x1(torch.zeros(1, 64, 4, 4)) + torch.cat([middle] * 2, 1))
    torch.testing.assert_close(out, expected)


def test_declared_binarization_replaces_only_the_bconfig():
    model = bnn_core.create_model("resnet8_bireal", binarize="xnor", width=4)
    binary = [n for n, m in model.named_modules() if is_binary_layer(m)]
    assert len(binary) == 6 and "stem.conv" not in binary
    assert type(model.layer1[0].conv.activation_pre_process).__name__ == "SteSign"


def test_stem_pool_halves_every_stage_resolution():
    sizes = {}
    for pool in (False, True):
        model = bnn_core.create_model("resnet8_bireal", width=4, stem_pool=pool)
        seen = []
        for stage in (model.layer1, model.layer2, model.layer3):
            stage.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.shape[-1]))
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        sizes[pool] = seen
    assert sizes == {False: [28, 14, 7], True: [14, 7, 4]}


def test_bad_model_options_are_config_errors():
    with pytest.raises(ConfigError, match="num_classes"):
        bnn_core.create_model("resnet18_bireal", num_classes=0)
    with pytest.raises(ConfigError, match="unknown parameter 'depth'"):
        bnn_core.create_model("resnet20_cifar", depth=32)


# The torchvision bridge.

TORCHVISION_SAMPLE = [
    ("resnet18", {}, 32, "conv1", "fc"),
    ("mobilenet_v2", {}, 32, "features.0.0", "classifier.1"),
    ("efficientnet_b0", {}, 32, "features.0.0", "classifier.1"),
    ("vit_b_16", {"image_size": 16}, 16, "conv_proj", "heads.head"),
]


def test_bridge_lists_exactly_torchvisions_classification_models():
    expected = set(torchvision.models.list_models(module=torchvision.models))
    assert {name for name, _ in classification_models()} == expected
    registered = bnn_core.list_models("torchvision/*")
    assert registered == sorted(f"torchvision/{name}" for name in expected)
    assert "torchvision/fasterrcnn_resnet50_fpn" not in registered  # detection
    assert "torchvision/quantized_resnet18" not in registered  # quantization


def test_bridge_scan_of_a_models_source():
    source = textwrap.dedent(
        '''
        @register_model()
        @handle_legacy_interface(
            weights=("pretrained", None),
        )
        def first(*, weights=None, **kwargs):
            return None


        @register_model(name="renamed")
        def second(**kwargs):
            """@register_model()"""


        def helper():
            pass


        class Holder:
            @register_model()
            def method(self):
                pass


        @register_model()
        # a comment between the decorator and the function
        def third():
            pass
        '''
    )
    assert list(registered_builders(source)) == ["first", "renamed", "third"]


@pytest.mark.parametrize(
    ("name", "options", "size", "first", "last"),
    TORCHVISION_SAMPLE,
    ids=[s[0] for s in TORCHVISION_SAMPLE],
)
def test_torchvision_models_binarize_with_first_and_last_float(name, options, size, first, last):
    torch.manual_seed(0)
    model = bnn_core.create_model(f"torchvision/{name}", binarize=True, num_classes=4, **options)
    layers = binarizable(model)
    kept = [n for n in layers if not is_binary_layer(model.get_submodule(n))]
    assert kept == [first, last] and layers[0] == first and layers[-1] == last
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_torchvision_options_are_checked():
    builder = bnn_core.get_model("torchvision/resnet18")
    with pytest.raises(ConfigError, match="not downloaded"):
        bnn_core.create_model("torchvision/resnet18", weights="DEFAULT")
    with pytest.raises(ConfigError, match="num_classes"):
        bnn_core.create_model("torchvision/resnet18", num_classes=-1)
    with pytest.raises(ConfigError, match="image_size"):
        bnn_core.create_model("torchvision/resnet18", image_size=32)
    assert builder.binarization["custom_config_layers_name"] == {"_first_": {}, "_last_": {}}
    assert REGISTRIES["model"].entry("torchvision/inception_v3").metadata["input_shape"] == (
        3,
        299,
        299,
    )


def run_isolated(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


def test_listing_torchvision_models_imports_neither_torch_nor_torchvision():
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        from bnn.cli import main
        outputs = []
        for argv in (["list-plugins", "--json"], ["list", "models", "torchvision/*", "--json"]):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                main(argv)
            outputs.append(json.loads(buffer.getvalue()))
        plugins, models = outputs
        registered = next(p for p in plugins["plugins"] if p["name"] == "bnn_models")
        print(json.dumps({
            "imported": ["torch" in sys.modules, "torchvision" in sys.modules],
            "registered": registered["registered"]["model"],
            "listed": {m["name"]: m["options"] for m in models},
        }))
        """
    )
    result = json.loads(run_isolated(code).strip().splitlines()[-1])
    assert result["imported"] == [False, False]
    assert "torchvision/mobilenet_v2" in result["registered"]
    assert result["listed"]["torchvision/vit_b_16"] == {"num_classes": 1000}


# Configs and the CLI.


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_binarize_default_in_a_recipe_takes_the_declaration(tmp_path, capsys):
    path = write(
        tmp_path,
        """
        version: 1
        model: {name: resnet8_bireal, width: 8}
        binarize: default
        """,
    )
    spec = load_recipe(path).binarization()
    assert spec.bconfig.model_dump()["activation_pre_process"] == "approx_sign"
    assert spec.ignore_layers_name == ["$downsample$"]

    assert main(["explain", str(path)]) == 0
    assert "resnet8_bireal(width=8): 6 of 10 layers binarized" in capsys.readouterr().out
    assert main(["explain", str(path), "--json"]) == 0
    plan = {p["name"]: p for p in json.loads(capsys.readouterr().out)["layers"]}
    assert plan["stem.conv"]["reason"].startswith("custom_config_layers_name['_first_']")
    assert plan["fc"]["reason"].startswith("custom_config_layers_name['_last_']")
    assert plan["layer2.0.downsample.conv"]["reason"] == "ignore_layers_name['$downsample$']"
    assert plan["layer1.0.conv"]["binarizers"]["activation_pre_process"] == "approx_sign"
    assert plan["layer1.0.conv"]["binarizers"]["weight_pre_process"] == "magnitude_aware_sign"


def test_binarize_default_for_a_torchvision_model(tmp_path, capsys):
    path = write(
        tmp_path,
        """
        version: 1
        model: {name: torchvision/mobilenet_v2, num_classes: 10}
        binarize: default
        """,
    )
    assert main(["explain", str(path), "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(p["name"], p["binarize"]) for p in (layers[0], layers[-1])] == [
        ("features.0.0", False),
        ("classifier.1", False),
    ]
    assert all(p["binarize"] for p in layers[1:-1]) and len(layers) == 53


def test_binarize_default_with_an_unknown_option_fails_validation(tmp_path):
    path = write(
        tmp_path,
        """
        version: 1
        model: {name: reactnet_a, widht: 2}
        binarize: default
        """,
    )
    with pytest.raises(BnnError, match="widht"):
        load_recipe(path)


def test_summary_uses_the_registered_input_shape(capsys):
    assert main(["summary", "resnet20_cifar", "--bconfig", "bireal", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [3, 32, 32]
    assert main(["summary", "binarynet_mlp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 28, 28]


def test_docs_describe_every_model():
    text = DOCS.read_text(encoding="utf-8")
    for name in [*MODELS, *TRAINED]:
        assert f"`{name}`" in text, f"docs/models.md does not describe {name}"
    assert "torchvision/" in text
