"""The registry API: names, aliases, wildcards, lazy loading and helpful errors."""

from __future__ import annotations

import sys
from typing import Annotated

import pytest
from pydantic import Field
from torch import nn

import bnn_core
from bnn_core.errors import DuplicateNameError, UnknownNameError
from bnn_core.registry import Entry, Registry, normalize_name, snake_case

pytestmark = pytest.mark.usefixtures("fresh_plugins")


class Doubler(nn.Module):
    """Multiplies the input by two."""

    def forward(self, x):
        return 2 * x


def test_names_are_normalised_for_lookup():
    assert normalize_name("Ste-Sign") == "ste_sign"
    assert bnn_core.get_binarizer("STE-SIGN") is bnn_core.get_binarizer("ste_sign")
    assert bnn_core.is_binarizer("Approx-Sign")


@pytest.mark.parametrize(
    ("seed_name", "canonical"),
    [
        ("BasicInputBinarizer", "basic_input"),
        ("XNORWeightBinarizer", "xnor_weight"),
        ("BasicScaleBinarizer", "basic_scale"),
        ("InputBiasBinarizer", "input_bias"),
        ("StochasticInputBinarizer", "stochastic_input"),
        ("AdvancedInputBinarizer", "advanced_input"),
        ("Identity", "identity"),
    ],
)
def test_seed_class_names_resolve(seed_name, canonical):
    target = bnn_core.get_binarizer(seed_name)
    assert target is bnn_core.get_binarizer(canonical)
    assert target.__name__ == seed_name


def test_listing_with_wildcards_is_sorted():
    signs = bnn_core.list_binarizers("*sign*")
    assert {"approx_sign", "ste_sign"} <= set(signs) and signs == sorted(signs)
    assert all("sign" in name for name in signs)
    assert bnn_core.list_binarizers("basic_*") == ["basic_input", "basic_scale"]
    everything = bnn_core.list_binarizers()
    assert everything == sorted(everything) and "identity" in everything
    assert bnn_core.list_binarizers("nothing*") == []


def test_unknown_name_suggests_close_matches_and_points_to_plugins():
    with pytest.raises(UnknownNameError) as caught:
        bnn_core.get_binarizer("ste_sgn")
    message = str(caught.value)
    assert "Unknown binarizer 'ste_sgn'" in message
    assert "Did you mean 'ste_sign'" in message
    assert "bnn list-plugins" in message and "bnn list binarizers" in message
    assert caught.value.suggestions[0] == "ste_sign"
    assert isinstance(caught.value, LookupError)


def test_register_direct_and_as_decorator():
    bnn_core.register_binarizer("doubler", Doubler, description="times two")
    assert bnn_core.get_binarizer("doubler") is Doubler

    @bnn_core.register_model("tiny_model", aliases=["TinyModel"])
    def tiny_model(num_classes: int = 3) -> nn.Module:
        return nn.Linear(4, num_classes)

    assert bnn_core.get_model("TinyModel") is tiny_model
    built = bnn_core.create_model("tiny_model", num_classes=5)
    assert built.out_features == 5


def test_create_validates_options():
    @bnn_core.register_model("tiny_model")
    def tiny_model(num_classes: int = 3) -> nn.Module:
        return nn.Linear(4, num_classes)

    with pytest.raises(bnn_core.ConfigError, match="unknown parameter 'depth'"):
        bnn_core.create_model("tiny_model", depth=3)
    with pytest.raises(bnn_core.ConfigError, match="parameter 'num_classes'"):
        bnn_core.create_model("tiny_model", num_classes="many")


def test_duplicate_in_process_registration_names_both_providers():
    with pytest.raises(DuplicateNameError) as caught:
        bnn_core.register_binarizer("ste_sign", Doubler)
    message = str(caught.value)
    assert "bnn_binarizers" in message and "<in-process>" in message
    assert "bnn_binarizers.sign:SteSign" in message and "Doubler" in message


def test_alias_collision_is_a_duplicate():
    with pytest.raises(DuplicateNameError):
        bnn_core.register_binarizer("my_xnor", Doubler, aliases=["XNORWeightBinarizer"])


def test_replace_overrides_an_existing_name():
    bnn_core.register_binarizer("doubler", Doubler)
    bnn_core.register_binarizer("doubler", nn.Identity, replace=True)
    assert bnn_core.get_binarizer("doubler") is nn.Identity


def test_registering_the_same_object_twice_is_harmless():
    bnn_core.register_binarizer("doubler", Doubler)
    bnn_core.register_binarizer("doubler", Doubler)
    assert bnn_core.list_binarizers("doubler") == ["doubler"]


def test_lazy_reference_is_imported_on_first_get(tmp_path, monkeypatch):
    (tmp_path / "lazy_binarizer_module.py").write_text(
        "from torch import nn\nclass Lazy(nn.Identity):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    bnn_core.register_binarizer("lazy_one", "lazy_binarizer_module:Lazy")
    assert "lazy_binarizer_module" not in sys.modules
    assert bnn_core.is_binarizer("lazy_one")
    assert bnn_core.list_binarizers("lazy*") == ["lazy_one"]
    assert "lazy_binarizer_module" not in sys.modules
    assert bnn_core.get_binarizer("lazy_one").__name__ == "Lazy"
    assert "lazy_binarizer_module" in sys.modules


def test_malformed_lazy_reference_is_rejected():
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        bnn_core.register_binarizer("bad_ref", "not a reference")


def test_reverse_lookup_without_import():
    registry = Registry("thing")
    registry.add(Entry("thing", "doubler", f"{__name__}:Doubler"))
    assert registry.name_of(Doubler) == "doubler"
    assert registry.name_of(nn.ReLU) is None


def test_snake_case():
    assert snake_case("ConvTranspose2d") == "conv_transpose2d"
    assert snake_case("XNORWeight") == "xnor_weight"
    assert snake_case("Linear") == "linear"


def test_layer_registry_lists_every_swappable_type():
    assert bnn_core.list_layers() == [
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "linear",
    ]
    mapping = bnn_core.layer_map()
    assert mapping[nn.Conv2d].__name__ == "BinaryConv2d"
    assert mapping[mapping[nn.Conv2d]] is mapping[nn.Conv2d]


def test_registering_a_new_layer_type_makes_it_swappable():
    from bnn_core.layers import BinaryLinear

    class MyLinear(nn.Linear):
        pass

    class BinaryMyLinear(BinaryLinear):
        _FLOAT_MODULE = MyLinear

    bnn_core.register_layer(MyLinear, BinaryMyLinear)
    assert "my_linear" in bnn_core.list_layers()
    model = nn.Sequential(MyLinear(4, 4))
    binary = bnn_core.prepare_binary_model(
        model, bnn_core.BConfig(activation_pre_process="ste_sign")
    )
    assert type(binary[0]) is BinaryMyLinear


def test_option_constraints_in_annotations_are_enforced():
    @bnn_core.register_model("constrained_model")
    def constrained_model(width: Annotated[int, Field(gt=0)] = 8) -> nn.Module:
        return nn.Linear(4, width)

    assert bnn_core.create_model("constrained_model", width=3).out_features == 3
    with pytest.raises(bnn_core.ConfigError, match="greater than 0"):
        bnn_core.create_model("constrained_model", width=-1)


def test_bnn_ops_names_the_registered_binarizers():
    import bnn.ops

    assert bnn.ops.SteSign is bnn_core.get_binarizer("ste_sign")
    assert bnn.ops.XNORWeightBinarizer is bnn_core.get_binarizer("xnor_weight")
    assert bnn.ops.Identity is bnn_core.Identity
    assert dir(bnn.ops) == sorted(bnn.ops.__all__)
    assert {"SteSign", "BasicScaleBinarizer", "Binarizer", "InputBiasBinarizer"} <= set(
        dir(bnn.ops)
    )
    for name in bnn.ops.__all__:
        assert isinstance(getattr(bnn.ops, name), type)
    with pytest.raises(AttributeError, match="NoSuchBinarizer"):
        bnn.ops.NoSuchBinarizer  # noqa: B018


def test_bnn_ops_resolves_through_the_registry_not_an_import():
    import bnn.ops

    cached = vars(bnn.ops).pop("ApproxSign", None)
    try:
        bnn_core.register_binarizer("approx_sign", Doubler, replace=True)
        assert bnn.ops.ApproxSign is Doubler
    finally:
        vars(bnn.ops).pop("ApproxSign", None)
        if cached is not None:
            bnn.ops.ApproxSign = cached
