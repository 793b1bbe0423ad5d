"""BConfig: every accepted spelling, validation with field paths, dumping and pickling."""

from __future__ import annotations

import functools
import pickle

import pytest
import yaml
from pydantic import ValidationError
from torch import nn

from bnn.ops import (
    BasicInputBinarizer,
    BasicScaleBinarizer,
    InputBiasBinarizer,
    SteSign,
    XNORWeightBinarizer,
)
from bnn_core import BConfig, BinarizerFactory, ConfigError, Identity
from bnn_core.config import BinarizeSpec, format_errors


def test_every_spelling_gives_the_same_factory():
    expected = BinarizerFactory(XNORWeightBinarizer, {"compute_alpha": False})
    spellings = [
        XNORWeightBinarizer.with_args(compute_alpha=False),
        functools.partial(XNORWeightBinarizer, compute_alpha=False),
        {"name": "xnor_weight", "compute_alpha": False},
        {"name": "XNORWeightBinarizer", "compute_alpha": False},
    ]
    for spelling in spellings:
        assert BConfig(weight_pre_process=spelling).weight_pre_process == expected
    assert BConfig(weight_pre_process="xnor").weight_pre_process == BinarizerFactory(
        XNORWeightBinarizer
    )
    assert BConfig(weight_pre_process=XNORWeightBinarizer).weight_pre_process.params == {}


def test_with_args_chains_and_validates():
    factory = SteSign.with_args(clip_value=2.0).with_args(sign_of_zero=0)
    assert factory.params == {"clip_value": 2.0, "sign_of_zero": 0}
    built = factory()
    assert (built.clip_value, built.sign_of_zero) == (2.0, 0)
    with pytest.raises(ConfigError, match="unknown parameter 'clip'"):
        SteSign.with_args(clip=2.0)


def test_unknown_option_and_wrong_type_are_reported_with_the_field_path():
    with pytest.raises(ValidationError) as caught:
        BConfig(
            weight_pre_process={"name": "xnor_weight", "compute_alpha": "maybe", "scale": 2},
            activation_pre_process={"name": "ste_sign", "clip_value": "wide"},
        )
    text = format_errors(caught.value, "config.yaml")
    assert "(2 problems)" in text
    weight_line = next(line for line in text.splitlines() if "weight_pre_process" in line)
    assert weight_line.startswith("  - weight_pre_process: binarizer xnor_weight:")
    assert "unknown parameter 'scale'" in weight_line
    assert "parameter 'compute_alpha'" in weight_line and "'maybe'" in weight_line
    assert "activation_pre_process: binarizer ste_sign: parameter 'clip_value'" in text


def test_unknown_binarizer_name_lists_a_suggestion():
    with pytest.raises(ValidationError, match="Did you mean 'approx_sign'"):
        BConfig(activation_pre_process="aprox_sign")


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="extra"):
        BConfig(activation_pre_proces="ste_sign")


def test_a_binarizer_in_the_wrong_slot_is_rejected():
    with pytest.raises(ValidationError, match="cannot be used as activation_pre_process"):
        BConfig(activation_pre_process=XNORWeightBinarizer)
    with pytest.raises(ValidationError, match="cannot be used as weight_pre_process"):
        BConfig(weight_pre_process=BasicScaleBinarizer)


def test_an_instance_is_rejected_with_advice():
    with pytest.raises(ValidationError, match="pass the class"):
        BConfig(activation_pre_process=SteSign())


def test_empty_bconfig_means_full_precision():
    assert BConfig().is_full_precision
    assert not BConfig(weight_pre_process=None).is_full_precision
    assert BConfig(weight_pre_process=None).factory("weight_pre_process").target is Identity


def test_nn_identity_and_none_become_the_identity_binarizer():
    config = BConfig(activation_pre_process=nn.Identity, activation_post_process=None)
    assert config.activation_pre_process.target is Identity
    assert config.model_dump() == {
        "activation_pre_process": "identity",
        "activation_post_process": "identity",
    }


def test_partial_config_merges_over_the_model_wide_one():
    base = BConfig(
        activation_pre_process=BasicInputBinarizer,
        weight_pre_process=XNORWeightBinarizer,
        activation_post_process=BasicScaleBinarizer,
    )
    layer = BConfig(activation_pre_process=InputBiasBinarizer)
    merged = layer.merged_over(base)
    assert merged.activation_pre_process.target is InputBiasBinarizer
    assert merged.weight_pre_process.target is XNORWeightBinarizer
    assert merged.activation_post_process.target is BasicScaleBinarizer
    assert BConfig().merged_over(base).is_full_precision


def test_yaml_round_trip_keeps_names_options_and_unset_fields():
    config = BConfig(
        activation_pre_process=InputBiasBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False, center_weights=True),
    )
    dumped = config.model_dump()
    assert dumped == {
        "activation_pre_process": "input_bias",
        "weight_pre_process": {
            "name": "xnor_weight",
            "compute_alpha": False,
            "center_weights": True,
        },
    }
    loaded = BConfig.model_validate(yaml.safe_load(yaml.safe_dump(dumped)))
    assert loaded == config
    assert loaded.model_fields_set == {"activation_pre_process", "weight_pre_process"}
    assert BConfig.model_validate_json(config.model_dump_json()) == config


def test_unregistered_binarizer_cannot_be_dumped():
    class Private(nn.Module):
        def forward(self, x):
            return x

    config = BConfig(activation_pre_process=Private)
    with pytest.raises(Exception, match="not registered"):
        config.model_dump()


def test_bconfig_pickles_with_options():
    config = BConfig(weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False))
    assert pickle.loads(pickle.dumps(config)) == config
    assert pickle.loads(pickle.dumps(config.weight_pre_process)) == config.weight_pre_process


def test_assignment_is_validated():
    config = BConfig()
    config.activation_pre_process = "ste_sign"
    assert config.activation_pre_process.target is SteSign
    with pytest.raises(ValidationError):
        config.weight_pre_process = "no_such_binarizer"


def test_json_schema_lists_registered_binarizers_and_their_options():
    schema = BConfig.model_json_schema()
    field = schema["properties"]["weight_pre_process"]
    names = next(v for v in field["anyOf"] if v.get("type") == "string")["enum"]
    assert {"xnor_weight", "ste_sign", "identity"} <= set(names)
    xnor = next(v for v in field["anyOf"] if v.get("title") == "xnor_weight")
    assert set(xnor["properties"]) == {"name", "compute_alpha", "center_weights"}
    assert xnor["additionalProperties"] is False


def test_binarize_section_reads_layer_rules():
    spec = BinarizeSpec.model_validate(
        {
            "bconfig": {"activation_pre_process": "ste_sign"},
            "custom_config_layers_name": {"_first_": {}, "fc": {"weight_pre_process": "xnor"}},
            "ignore_layers_name": ["$.*downsample.*$"],
        }
    )
    assert spec.custom_config_layers_name["_first_"].is_full_precision
    assert spec.custom_config_layers_name["fc"].weight_pre_process.target is XNORWeightBinarizer
