"""Tests of bnn-timm, run against the installed distribution (its entry point must be
installed for bnn to find the models)."""

from __future__ import annotations

import subprocess
import sys

import bnn_core
import pytest
import torch
from bnn_core.registries import REGISTRIES
from torch import nn

from bnn_timm.models import DEFAULT_INPUT_SIZE, TimmInputSize
from bnn_timm.names import registered_builders, timm_model_names

timm = pytest.importorskip("timm")

PLUGIN = "bnn-timm"
#: Each small timm model with its first and last binarizable layers, which stay float.
FLOAT_ENDS = {
    "test_resnet": ("conv1.0", "fc"),
    "test_efficientnet": ("conv_stem", "classifier"),
    "test_vit": ("patch_embed.proj", "head"),
}


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The convolutions and linear layers of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def test_plugin_is_discovered_through_its_entry_point() -> None:
    info = next(i for i in bnn_core.plugin_infos() if i.name == PLUGIN)
    assert info.status == "loaded", info.error
    assert info.distribution == PLUGIN
    assert list(info.registered) == ["model"]
    assert len(info.registered["model"]) == len(timm.list_models())


def test_scanned_names_are_exactly_timms_models_and_modules() -> None:
    scanned = timm_model_names()
    assert [name for name, _ in scanned] == sorted(timm.list_models())
    resnets = sorted(name for name, module in scanned if module == "resnet")
    assert resnets == sorted(timm.list_models(module="resnet"))
    assert bnn_core.list_models("timm/test_res*") == ["timm/test_resnet"]


def test_scan_finds_only_top_level_decorated_builders() -> None:
    source = (
        '"""A module."""\n'
        "@register_model\n"
        "def plain(pretrained=False, **kwargs):\n"
        "    pass\n"
        "@register_model\n"
        "@some_other_decorator(x=1)\n"
        "def decorated_twice(**kwargs):\n"
        "    pass\n"
        "# @register_model\n"
        "def commented_out():\n"
        "    pass\n"
        "class Holder:\n"
        "    @register_model\n"
        "    def method(self):\n"
        "        pass\n"
        "@register_model\n"
        "x = 1\n"
        "def not_decorated():\n"
        "    pass\n"
    )
    assert registered_builders(source) == ["plain", "decorated_twice"]
    assert registered_builders("@register_model\r\ndef windows_endings():\r\n") == [
        "windows_endings"
    ]


def test_listing_imports_neither_torch_nor_timm() -> None:
    code = (
        "import sys, bnn_core; names = bnn_core.list_models('timm/*'); "
        "print(len(names), 'torch' in sys.modules, 'timm' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(timm.list_models())), "False", "False"]


def test_declared_binarization_keeps_first_and_last_float_with_react() -> None:
    assert bnn_core.get_model("timm/test_resnet").binarization == {
        "bconfig": "react",
        "custom_config_layers_name": {"_first_": {}, "_last_": {}},
        "ignore_layers_name": [],
    }


@pytest.mark.parametrize("name", FLOAT_ENDS)
def test_binarize_true_keeps_the_ends_float_and_binarizes_the_rest(name: str) -> None:
    model = bnn_core.create_model(f"timm/{name}", binarize=True, num_classes=10)
    found = layers(model)
    floating = [n for n, m in found.items() if not isinstance(m, bnn_core.BinaryLayerMixin)]
    assert floating == list(FLOAT_ENDS[name])
    assert len(found) - len(floating) >= 10
    for layer_name, layer in found.items():
        if layer_name not in floating:  # the react method's binarizers
            assert type(layer.weight_pre_process) is bnn_core.get_binarizer("xnor_weight")
            assert type(layer.activation_pre_process) is bnn_core.get_binarizer("input_bias")


def test_binarized_model_runs_forward_and_backward_on_grey_images() -> None:
    torch.manual_seed(0)
    model = bnn_core.create_model(
        "timm/test_vit",
        binarize=True,
        num_classes=10,
        in_chans=1,
        img_size=28,
        patch_size=7,
        depth=1,
    )
    assert model.patch_embed.proj.in_channels == 1 and len(model.blocks) == 1
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    binary = model.blocks[0].attn.qkv
    assert isinstance(binary, bnn_core.BinaryLayerMixin)
    assert binary.weight.grad is not None and binary.weight.grad.abs().sum() > 0


def test_options_reach_timm() -> None:
    model = bnn_core.create_model("timm/test_resnet", in_chans=1, channels=[8, 16, 16, 32])
    assert model.conv1[0].in_channels == 1
    assert model.fc.in_features == 32 and model.fc.out_features == 1000


def test_declared_input_shape_is_timms_and_fits_the_model() -> None:
    shape = REGISTRIES["model"].entry("timm/test_vit").metadata["input_shape"]
    assert isinstance(shape, TimmInputSize)
    assert tuple(shape) == (3, 160, 160)
    assert tuple(REGISTRIES["model"].entry("timm/inception_v3").metadata["input_shape"]) == (
        3,
        299,
        299,
    )
    model = bnn_core.create_model("timm/test_vit", num_classes=3)
    assert model(torch.randn(1, *shape)).shape == (1, 3)
    assert DEFAULT_INPUT_SIZE == (3, 224, 224)


def test_an_option_timm_rejects_is_a_config_error_naming_model_and_options() -> None:
    with pytest.raises(bnn_core.ConfigError, match=r"timm/test_resnet.*no_such_option=1") as err:
        bnn_core.create_model("timm/test_resnet", num_classes=10, no_such_option=1)
    assert "num_classes=10" in str(err.value)
    with pytest.raises(bnn_core.ConfigError, match=r"parameter 'in_chans'"):
        bnn_core.create_model("timm/test_resnet", in_chans=0)


@pytest.mark.parametrize("option", ["checkpoint_path", "pretrained_cfg", "cache_dir"])
def test_options_that_load_weights_or_files_are_refused(option: str) -> None:
    with pytest.raises(bnn_core.ConfigError, match=rf"timm/test_resnet.*{option}"):
        bnn_core.create_model("timm/test_resnet", **{option: "/tmp/weights.pth"})


def test_unknown_timm_name_suggests_the_close_one() -> None:
    with pytest.raises(bnn_core.UnknownNameError, match="timm/test_resnet"):
        bnn_core.create_model("timm/test_resnett")
