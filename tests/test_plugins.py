"""Plugin discovery through entry points: loading, broken plugins, duplicates, switches."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bnn_core
from bnn_core.errors import DuplicateNameError, PluginError
from bnn_core.plugins import plugin_infos, register_plugin
from tests.fakedist import write_distribution

pytestmark = pytest.mark.usefixtures("fresh_plugins")

GOOD = """
from bnn_core import hookimpl

@hookimpl
def bnn_register_binarizers(register):
    register("fake_sign", "bnn_binarizers.sign:SteSign", aliases=["FakeSign"])

@hookimpl
def bnn_register_models(register):
    register("fake_model", "bnn_models.small:lenet5")
"""

OTHER_STE = """
from bnn_core import hookimpl

@hookimpl
def bnn_register_binarizers(register):
    register("ste_sign", "bnn_binarizers.sign:ApproxSign")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where tests install fake distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def info(name):
    return next(i for i in plugin_infos() if i.name == name)


def test_builtins_register_through_entry_points():
    infos = {i.name: i for i in plugin_infos()}
    assert {"bnn_core", "bnn_binarizers", "bnn_models", "bnn_datasets"} <= set(infos)
    binarizers = infos["bnn_binarizers"]
    assert binarizers.distribution == "bnn-core" and binarizers.builtin
    assert binarizers.module == "bnn_binarizers.plugin"
    assert "ste_sign" in binarizers.registered["binarizer"]
    assert infos["bnn_core"].registered["layer"][0] == "linear"


def test_installed_distribution_is_discovered(site):
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD, version="2.3.4")
    assert bnn_core.get_binarizer("FakeSign").__name__ == "SteSign"
    fake = info("bnn-fake")
    assert (fake.distribution, fake.version, fake.module) == ("bnn-fake", "2.3.4", "bnn_fake")
    assert fake.registered == {"binarizer": ["fake_sign"], "model": ["fake_model"]}
    assert not fake.builtin and fake.status == "loaded"
    assert bnn_core.get_plugin_manager().has_plugin("bnn-fake")


def test_plugin_that_fails_to_import_is_recorded_and_others_load(site):
    write_distribution(site, "bnn-broken", "bnn_broken", "import no_such_module_xyz\n")
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD)
    assert bnn_core.is_binarizer("fake_sign")
    broken = info("bnn-broken")
    assert broken.status == "broken"
    assert "ModuleNotFoundError" in broken.error and "no_such_module_xyz" in broken.error


def test_plugin_whose_hook_raises_registers_nothing(site):
    code = (
        GOOD + "\n@hookimpl\ndef bnn_register_datasets(register):\n    raise RuntimeError('boom')\n"
    )
    write_distribution(site, "bnn-halfway", "bnn_halfway", code)
    assert not bnn_core.is_binarizer("fake_sign")
    broken = info("bnn-halfway")
    assert broken.status == "broken" and "boom" in broken.error
    assert broken.registered == {}


def test_misspelled_hook_name_is_reported(site):
    code = (
        "from bnn_core import hookimpl\n"
        "@hookimpl\ndef bnn_register_binarizer(register):\n    pass\n"
    )
    write_distribution(site, "bnn-typo", "bnn_typo", code)
    typo = info("bnn-typo")
    assert typo.status == "broken" and "bnn_register_binarizer" in typo.error


def test_strict_mode_makes_a_broken_plugin_fatal(site, monkeypatch):
    write_distribution(site, "bnn-broken", "bnn_broken", "raise ImportError('nope')\n")
    monkeypatch.setenv("BNN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"bnn-broken.*nope"):
        bnn_core.list_binarizers()


def test_duplicate_name_from_two_plugins_names_both(site):
    write_distribution(site, "bnn-other", "bnn_other", OTHER_STE)
    with pytest.raises(DuplicateNameError) as caught:
        bnn_core.get_binarizer("ste_sign")
    message = str(caught.value)
    assert "bnn_binarizers" in message and "bnn-other" in message
    assert bnn_core.get_binarizer("approx_sign").__name__ == "ApproxSign"
    assert not bnn_core.is_binarizer("ste_sign")


def test_duplicate_name_is_fatal_in_strict_mode(site, monkeypatch):
    write_distribution(site, "bnn-other", "bnn_other", OTHER_STE)
    monkeypatch.setenv("BNN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"ste_sign.*bnn-other"):
        bnn_core.list_binarizers()


def test_disable_autoload(site, monkeypatch):
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD)
    monkeypatch.setenv("BNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert bnn_core.list_binarizers() == ["identity"]
    assert info("bnn-fake").status == "disabled"
    assert "BNN_DISABLE_PLUGIN_AUTOLOAD" in info("bnn_binarizers").error


def test_only_named_plugins_load(site, monkeypatch):
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD)
    monkeypatch.setenv("BNN_PLUGINS", "bnn-fake, bnn_models, not-installed")
    assert bnn_core.list_binarizers() == ["fake_sign", "identity"]
    assert {"binarynet_mlp", "fake_model", "lenet5"} <= set(bnn_core.list_models())
    assert info("bnn_binarizers").status == "disabled"
    assert info("not_installed").status == "broken"


def test_autoload_off_still_loads_plugins_named_explicitly(site, monkeypatch):
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD)
    monkeypatch.setenv("BNN_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("BNN_PLUGINS", "bnn-fake")
    assert bnn_core.list_binarizers() == ["fake_sign", "identity"]


def test_disabled_plugins_by_entry_point_or_distribution_name(site, monkeypatch):
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD)
    monkeypatch.setenv("BNN_DISABLED_PLUGINS", "bnn-core")
    assert bnn_core.list_binarizers() == ["fake_sign", "identity"]
    assert info("bnn_models").status == "disabled"


def test_in_process_plugin_object():
    class MyPlugin:
        @bnn_core.hookimpl
        def bnn_register_datasets(self, register):
            register("my_data", "bnn_datasets.synthetic:synthetic")

    registered = register_plugin(MyPlugin(), name="my-plugin")
    assert registered.registered == {"dataset": ["my_data"]}
    assert len(bnn_core.create_dataset("my_data", length=4)) == 4


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["list-plugins"], ["list-plugins", "--json"]])
def test_fast_commands_do_not_import_torch(argv):
    code = (
        "import sys, contextlib, io\n"
        "from bnn.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    assert _run_python(code).strip() == "False"


def test_only_the_named_plugin_loads_among_several(site, monkeypatch):
    write_distribution(site, "bnn-aaa", "bnn_aaa", GOOD)
    write_distribution(site, "bnn-zzz", "bnn_zzz", OTHER_STE.replace("ste_sign", "zzz_sign"))
    monkeypatch.setenv("BNN_PLUGINS", "bnn-aaa")
    assert bnn_core.list_binarizers() == ["fake_sign", "identity"]
    assert info("bnn-zzz").status == "disabled"


def test_broken_lazy_reference_is_a_clear_error(site):
    code = (
        "from bnn_core import hookimpl\n"
        "@hookimpl\ndef bnn_register_binarizers(register):\n"
        "    register('ghost_sign', 'bnn_ghost.missing:Ghost')\n"
    )
    write_distribution(site, "bnn-ghost", "bnn_ghost", code)
    with pytest.raises(PluginError) as caught:
        bnn_core.get_binarizer("ghost_sign")
    message = str(caught.value)
    assert "'ghost_sign' registered by 'bnn-ghost'" in message
    assert "ModuleNotFoundError" in message and "BNN_DISABLED_PLUGINS=bnn-ghost" in message


def test_two_plugins_claiming_one_float_layer_is_an_error(site):
    code = (
        "from bnn_core import hookimpl\n"
        "@hookimpl\ndef bnn_register_layers(register):\n"
        "    register('torch.nn:Conv2d', 'bnn_core.layers:BinaryConv2d', name='my_conv')\n"
    )
    write_distribution(site, "bnn-conv", "bnn_conv", code)
    with pytest.raises(DuplicateNameError, match=r"bnn_core.*bnn-conv"):
        bnn_core.layer_map()


def test_list_binarizers_marks_conflicts_and_broken_entries(site, capsys):
    from bnn.cli import main

    write_distribution(site, "bnn-other", "bnn_other", OTHER_STE)
    code = (
        "from bnn_core import hookimpl\n"
        "@hookimpl\ndef bnn_register_binarizers(register):\n"
        "    register('ghost_sign', 'bnn_ghost.missing:Ghost')\n"
    )
    write_distribution(site, "bnn-ghost", "bnn_ghost", code)
    assert main(["list", "binarizers"]) == 0
    out = capsys.readouterr().out
    assert "CONFLICT: 'ste_sign' is registered by bnn_binarizers and bnn-other" in out
    assert "BROKEN: binarizer 'ghost_sign' registered by 'bnn-ghost'" in out
    assert "approx_sign" in out


def test_list_plugins_shows_a_broken_plugin_with_its_error(site, capsys):
    from bnn.cli import main

    write_distribution(site, "bnn-broken", "bnn_broken", "raise ImportError('nope')\n")
    assert main(["list-plugins"]) == 0
    captured = capsys.readouterr()
    assert "bnn-broken" in captured.out
    assert "BROKEN: failed to import: ImportError: nope" in captured.out
    assert captured.err == ""  # the table shows it: no warning line besides


WARNING_TAIL = "Run `bnn list-plugins` for details; BNN_STRICT_PLUGINS=1 makes this an error."


def test_broken_plugin_is_reported_by_one_line_across_registry_calls(site, capsys):
    write_distribution(site, "bnn-broken", "bnn_broken", "import no_such_module_xyz\n")
    hook_raises = "from bnn_core import hookimpl\n@hookimpl\ndef bnn_register_models(register):\n"
    write_distribution(site, "bnn-raises", "bnn_raises", hook_raises + "    raise KeyError(1)\n")
    assert bnn_core.is_binarizer("ste_sign")
    assert "lenet5" in bnn_core.list_models()
    bnn_core.get_dataset("synthetic")
    bnn_core.load_plugins()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "bnn: warning: plugin 'bnn-broken' is broken (failed to import); plugin 'bnn-raises' "
        "is broken (failed to register its components). " + WARNING_TAIL
    ]


def test_duplicate_name_is_reported_by_one_line(site, capsys):
    write_distribution(site, "bnn-other", "bnn_other", OTHER_STE)
    assert bnn_core.is_binarizer("approx_sign")
    assert not bnn_core.is_binarizer("ste_sign")
    assert capsys.readouterr().err.splitlines() == [
        "bnn: warning: binarizer 'ste_sign' registered by bnn_binarizers and bnn-other "
        "(unusable until one is disabled). " + WARNING_TAIL
    ]


def test_no_warning_when_every_plugin_loads(site, capsys):
    write_distribution(site, "bnn-fake", "bnn_fake", GOOD)
    assert bnn_core.is_binarizer("fake_sign")
    bnn_core.list_datasets()
    assert capsys.readouterr().err == ""


def test_no_warning_in_strict_mode_only_the_error(site, monkeypatch, capsys):
    write_distribution(site, "bnn-broken", "bnn_broken", "raise ImportError('nope')\n")
    monkeypatch.setenv("BNN_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        bnn_core.list_binarizers()
    assert capsys.readouterr().err == ""


def test_a_command_warns_once_on_stderr(site, capsys):
    from bnn.cli import main

    write_distribution(site, "bnn-broken", "bnn_broken", "raise ImportError('nope')\n")
    assert main(["list", "binarizers"]) == 0
    captured = capsys.readouterr()
    assert "ste_sign" in captured.out
    assert captured.err.splitlines() == [
        "bnn: warning: plugin 'bnn-broken' is broken (failed to import). " + WARNING_TAIL
    ]
