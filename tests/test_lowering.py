"""Export through the ``lowering`` registry: a third party's block and binarizer export
once a plugin registers their lowerings (in process, through the same hook the
built-ins use); subclasses take their nearest registered base's lowering; two plugins
claiming one module type is an error naming both; missing or wrong lowerings are
refused with the layer's name and how to add one."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bnn import BConfig, prepare_binary_model
from bnn.deploy import ExportError, export
from bnn_core import hookimpl
from bnn_core.binarizer import Binarizer, ValueSet
from bnn_core.errors import DuplicateNameError
from bnn_core.layers import BinaryConv2d
from bnn_core.lowering import (
    SIGN,
    BinarizerLowering,
    ChannelAffine,
    LoweringContext,
    LoweringError,
    no_threshold,
)
from bnn_core.plugins import register_plugin
from bnn_core.registries import lowering_for, register_lowering
from bnn_runtime.executor import load
from tests.packing import assert_agree

pytestmark = pytest.mark.usefixtures("fresh_plugins")
SHAPE = (1, 8, 8)


class Negate(nn.Module):
    """``-x``, written with a function the exporter does not convert (``torch.neg``): it
    exports only as a leaf through its lowering."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.neg(x)


class LoudNegate(Negate):
    """A subclass without a lowering of its own."""


class Halve(Negate):
    """A subclass with its own lowering: ``-x / 2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.neg(x) / 2


def negate(ctx: LoweringContext, module: nn.Module) -> str:
    return ctx.add("scalar", ctx.inputs, {"mul": -1.0, "add": 0.0})


def halve(ctx: LoweringContext, module: nn.Module) -> str:
    return ctx.add("scalar", ctx.inputs, {"mul": -0.5, "add": 0.0})


class ShiftSign(Binarizer):
    """``sign(x + 0.25)``: a third party's input binarizer with a fixed threshold."""

    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x + 0.25 >= 0, 1.0, -1.0).to(x.dtype)


def quarter(binarizer: nn.Module, channels: int) -> np.ndarray:
    return np.full(channels, 0.25)


class Triple(Binarizer):
    """An output binarizer computing ``3 y``."""

    packable = True

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return 3 * y


class Plugin:
    """A third-party plugin registering its lowerings through the hook."""

    def __init__(self, *pairs: tuple[object, object]) -> None:
        self.pairs = pairs

    @hookimpl
    def bnn_register_lowerings(self, register) -> None:
        for module_type, lowering in self.pairs:
            register(module_type, lowering)


def network(block: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), block, nn.Flatten(), nn.Linear(256, 3))


def run_both(model: nn.Module, path: Path) -> tuple[np.ndarray, np.ndarray]:
    export(model, path, SHAPE)
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    return expected, load(path)(x.numpy())


def test_a_plugin_lowering_exports_its_block_as_a_leaf(tmp_path):
    torch.manual_seed(0)
    model = network(Negate())
    with pytest.raises(ExportError, match=r"node neg \(torch.neg\) is not supported"):
        export(model, tmp_path / "m.bnnpack", SHAPE)
    info = register_plugin(Plugin((Negate, negate)), name="bnn-negate")
    assert info.registered == {"lowering": [f"{__name__}:negate"]}
    assert_agree(*run_both(model, tmp_path / "m.bnnpack"))
    (node,) = [n for n in load(tmp_path / "m.bnnpack").nodes if n.op == "scalar"]
    assert node.name == "1" and node.modules == ["1"]


def test_subclasses_take_the_nearest_registered_lowering(tmp_path):
    torch.manual_seed(0)
    register_lowering(Negate, negate)
    register_lowering(f"{__name__}:Halve", f"{__name__}:halve")  # lazy references
    assert lowering_for(LoudNegate) is negate and lowering_for(Halve) is halve
    assert lowering_for(nn.Module) is None
    assert_agree(*run_both(network(LoudNegate()), tmp_path / "a.bnnpack"))
    assert_agree(*run_both(network(Halve()), tmp_path / "b.bnnpack"))


def test_builtins_register_through_the_same_hook():
    from bnn_binarizers.sign import BasicInputBinarizer
    from bnn_models.blocks import LeakyHardTanh, RPReLU

    assert lowering_for(BasicInputBinarizer) is SIGN  # a subclass of ste_sign
    assert lowering_for(RPReLU).__module__ == "bnn_models.lowering"
    assert lowering_for(LeakyHardTanh).__name__ == "hardtanh"
    assert lowering_for(BinaryConv2d).__name__ == "binary_layer"  # not Conv2d's
    assert lowering_for(nn.ReLU6).__name__ == "hardtanh"


def test_two_plugins_lowering_one_type_is_an_error_naming_both(tmp_path):
    register_plugin(Plugin((Negate, negate)), name="bnn-first")
    register_plugin(Plugin((Negate, halve)), name="bnn-second")
    with pytest.raises(DuplicateNameError) as error:
        export(network(Negate()), tmp_path / "m.bnnpack", SHAPE)
    assert "bnn-first" in str(error.value) and "bnn-second" in str(error.value)


def test_one_type_under_two_names_is_an_error_naming_both():
    register_lowering(Negate, negate, name="negate_one")
    register_lowering(Negate, halve, name="negate_two")
    with pytest.raises(DuplicateNameError, match=r"negate_one.*negate_two"):
        lowering_for(Negate)


def test_a_module_without_lowering_says_how_to_add_one(tmp_path):
    with pytest.raises(ExportError) as error:
        export(nn.Sequential(nn.Flatten(), nn.GELU()), tmp_path / "m.bnnpack", (4,))
    message = str(error.value)
    assert message.startswith("layer 1 (GELU) is not supported by the packed runtime")
    assert "torch.nn.modules.activation:GELU" in message
    assert "Conv2d" in message and "RPReLU" in message  # what has a lowering
    assert 'bnn_register_lowerings hook (see docs/deploy.md, "Adding a lowering")' in message


def binary_model(**bconfig) -> nn.Module:
    torch.manual_seed(0)
    float_model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1), nn.Flatten()
    )
    return prepare_binary_model(
        float_model,
        BConfig(**{"weight_pre_process": "ste_sign", **bconfig}),
        custom_config_layers_name={"_first_": BConfig()},
    )


def test_a_binarizer_without_lowering_says_how_to_add_one(tmp_path):
    with pytest.raises(ExportError) as error:
        export(binary_model(activation_pre_process=ShiftSign), tmp_path / "m.bnnpack", SHAPE)
    message = str(error.value)
    assert message.startswith("layer 1: its activation_pre_process ShiftSign has no export")
    assert f"{__name__}:ShiftSign" in message and "BinarizerLowering" in message
    assert "bnn_register_lowerings" in message and "Adding a lowering" in message


def test_a_third_party_binarizer_folds_through_its_lowering(tmp_path):
    register_lowering(ShiftSign, BinarizerLowering(threshold=quarter))
    register_lowering(Triple, BinarizerLowering(output=lambda b, c: ChannelAffine(np.full(c, 3))))
    model = binary_model(activation_pre_process=ShiftSign, activation_post_process=Triple)
    expected, got = run_both(model, tmp_path / "m.bnnpack")
    assert_agree(expected, got)
    (node,) = [n for n in load(tmp_path / "m.bnnpack").nodes if n.op == "binary_conv2d"]
    assert set(node.tensors) == {"weight", "threshold", "scale", "bias"}


@pytest.mark.parametrize(
    ("lowering", "fragment"),
    [
        (BinarizerLowering(threshold=no_threshold), "differs from sign(x + per-channel"),
        (BinarizerLowering(weight=True), "does not fold it as an input binarizer"),
        (BinarizerLowering(threshold=lambda b, c: np.zeros(c + 1)), "gave a threshold of 5 values"),
    ],
    ids=["wrong_threshold", "wrong_role", "wrong_size"],
)
def test_a_binarizer_lowering_that_does_not_fit_is_refused(lowering, fragment, tmp_path):
    register_lowering(ShiftSign, lowering)
    with pytest.raises(ExportError, match="layer 1: ") as error:
        export(binary_model(activation_pre_process=ShiftSign), tmp_path / "m.bnnpack", SHAPE)
    assert fragment in str(error.value)


def test_an_output_lowering_the_probe_contradicts_is_refused(tmp_path):
    register_lowering(Triple, BinarizerLowering(output=lambda b, c: ChannelAffine(np.full(c, 2))))
    model = binary_model(activation_pre_process="ste_sign", activation_post_process=Triple)
    with pytest.raises(ExportError, match="layer 1: its activation_post_process Triple does not"):
        export(model, tmp_path / "m.bnnpack", SHAPE)


def test_a_lowering_refusal_names_the_layer(tmp_path):
    def refuse(ctx: LoweringContext, module: nn.Module) -> str:
        raise LoweringError("negation of rank-4 values is not supported")

    register_lowering(Negate, refuse)
    with pytest.raises(ExportError) as error:
        export(network(Negate()), tmp_path / "m.bnnpack", SHAPE)
    assert str(error.value) == "layer 1 (Negate): negation of rank-4 values is not supported"


def test_the_exporter_imports_no_plugin_package():
    plugins = {"bnn_models", "bnn_binarizers", "bnn_datasets", "bnn_example_plugin"}
    deploy = Path(__file__).resolve().parents[1] / "bnn" / "deploy"
    for path in sorted(deploy.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & plugins, path.name
