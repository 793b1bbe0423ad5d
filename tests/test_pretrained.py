"""Pretrained weights: local paths, a local HTTP server, plugin path handlers, hashes,
model cards, registered weights, binarized models and the errors of each."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from iopath.common.file_io import PathHandler

import bnn_core
from bnn.cli import main
from bnn_core import weights
from bnn_core.registries import create_model, register_model
from bnn_core.weights import (
    WeightsFormatError,
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsSourceError,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture
def trained(tmp_path) -> tuple[torch.nn.Module, Path]:
    """A float LeNet-5 (seeded, so unlike a fresh one) and its state dict on disk."""
    torch.manual_seed(1)
    model = create_model("lenet5")
    path = tmp_path / "lenet5.pt"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving ``tmp_path``; downloads cached in tmp_path."""
    monkeypatch.setenv("BNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_local_path_loads_the_weights(trained):
    model, path = trained
    assert same_weights(create_model("lenet5", pretrained=str(path)), model)
    assert not same_weights(create_model("lenet5"), model)


def test_download_with_its_hash_is_verified_and_cached(trained, server, tmp_path):
    model, path = trained
    url = f"{server}/lenet5.pt"
    assert same_weights(create_model("lenet5", pretrained=f"{url}#sha256={sha256(path)}"), model)
    (cached,) = (tmp_path / "cache" / "weights").glob("*-lenet5.pt")
    assert cached.read_bytes() == path.read_bytes()
    loaded = create_model("lenet5", pretrained={"url": url, "sha256": sha256(path).upper()})
    assert same_weights(loaded, model)


def test_a_missing_url_is_a_404_error(server):
    with pytest.raises(WeightsSourceError, match=r"the server answered 404 File not found"):
        create_model("lenet5", pretrained=f"{server}/nothing.pt#sha256={'0' * 64}")


def test_an_unusable_download_cache_is_one_clear_error(server, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BNN_CACHE_DIR", str(blocker))
    with pytest.raises(WeightsSourceError, match=r"cannot be created.*BNN_CACHE_DIR"):
        create_model("lenet5", pretrained=f"{server}/lenet5.pt#sha256={'0' * 64}")


def test_a_wrong_hash_shows_both_and_the_download_is_not_kept(trained, server, tmp_path):
    _, path = trained
    wrong = "ab" * 32
    with pytest.raises(WeightsIntegrityError) as error:
        create_model("lenet5", pretrained=f"{server}/lenet5.pt#sha256={wrong}")
    assert wrong in str(error.value) and sha256(path) in str(error.value)
    assert not list((tmp_path / "cache" / "weights").glob("*lenet5.pt"))


def test_a_url_without_a_hash_is_refused_before_downloading(trained, server, tmp_path):
    with pytest.raises(WeightsSourceError, match=r"no SHA-256.*#sha256="):
        create_model("lenet5", pretrained=f"{server}/lenet5.pt")
    assert not (tmp_path / "cache").exists()


def test_an_unreachable_host_and_a_bad_url(trained):
    with pytest.raises(WeightsSourceError, match="cannot be reached"):
        create_model("lenet5", pretrained=f"http://127.0.0.1:1/w.pt#sha256={'0' * 64}")
    with pytest.raises(WeightsSourceError, match="names no host"):
        create_model("lenet5", pretrained=f"http:///w.pt#sha256={'0' * 64}")
    with pytest.raises(WeightsSourceError, match="no handler reads 'ftp://"):
        create_model("lenet5", pretrained="ftp://host/w.pt")


def test_files_over_the_size_limit_are_refused(trained, server, monkeypatch):
    _, path = trained
    monkeypatch.setattr(weights, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(WeightsFormatError, match="at most 1,000 bytes"):
        create_model("lenet5", pretrained=str(path))
    with pytest.raises(WeightsFormatError, match="at most 1,000 bytes"):
        create_model("lenet5", pretrained=f"{server}/lenet5.pt#sha256={sha256(path)}")


def test_a_model_card_beside_the_file_gives_its_hash(trained):
    model, path = trained
    card = path.with_name("lenet5.card.yaml")
    card.write_text(f"accuracy: 0.9\nsha256: '{'0' * 64}'\n")
    with pytest.raises(WeightsIntegrityError, match="in its model card"):
        create_model("lenet5", pretrained=str(path))
    card.write_text(f"accuracy: 0.9\nsha256: {sha256(path)}\n")
    assert same_weights(create_model("lenet5", pretrained=str(path)), model)


def test_wrappers_and_bnn_checkpoints_are_unwrapped(trained, tmp_path):
    model, _ = trained
    state = model.state_dict()
    ema = {"module." + k: v for k, v in state.items()} | {"n_averaged": torch.tensor(3)}
    files = {
        "wrapped.pt": {"state_dict": state, "epoch": 3},
        "model.pt": {"model": state},
        "parallel.pt": {"module." + k: v for k, v in state.items()},
        "run.pt": {"format": "bnn-checkpoint", "format_version": 2, "model": state, "ema": None},
        "ema.pt": {"format": "bnn-checkpoint", "model": {}, "ema": ema},
    }
    for name, content in files.items():
        torch.save(content, tmp_path / name)
        assert same_weights(create_model("lenet5", pretrained=str(tmp_path / name)), model), name


@pytest.fixture
def binarized(tmp_path) -> tuple[torch.nn.Module, Path]:
    """A LeNet-5 binarized with react, a binarizer moved off its initial state, and its
    state dict on disk."""
    torch.manual_seed(2)
    binary = create_model("lenet5", binarize="react")
    with torch.no_grad():
        binary.conv2.activation_pre_process.bias.fill_(0.25)
    path = tmp_path / "binary.pt"
    torch.save(binary.state_dict(), path)
    return binary, path


def test_binarized_weights_load_into_the_binarized_model(binarized):
    binary, path = binarized
    loaded = create_model("lenet5", binarize="react", pretrained=str(path))
    assert same_weights(loaded, binary)
    with pytest.raises(WeightsMismatchError, match=r"binarized model .*activation_pre_process"):
        create_model("lenet5", pretrained=str(path))


def test_float_weights_load_into_a_binarized_model(trained):
    model, path = trained
    binary = create_model("lenet5", binarize="react", pretrained=str(path))
    assert torch.equal(binary.conv2.weight, model.conv2.weight)
    assert torch.equal(
        binary.conv2.activation_pre_process.bias,
        torch.zeros_like(binary.conv2.activation_pre_process.bias),
    )


def test_wrong_architecture_names_a_few_keys_of_each_problem(trained):
    _, path = trained
    with pytest.raises(WeightsMismatchError) as error:
        create_model("lenet5", width=8, num_classes=3, pretrained=str(path))
    message = str(error.value)
    assert "shape mismatches: conv1.weight ((32, 1, 5, 5) in the file, (8, 1, 5, 5)" in message
    assert "and " in message and "more" in message
    with pytest.raises(WeightsMismatchError, match=r"missing keys: fc3.weight"):
        create_model("binarynet_mlp", pretrained=str(path))


def test_files_that_are_not_weights_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    with pytest.raises(WeightsFormatError, match="begins with b'not '"):
        create_model("lenet5", pretrained=str(text))
    code = tmp_path / "code.pt"
    torch.save({"weight": Payload()}, code)
    with pytest.raises(WeightsFormatError, match="never runs code"):
        create_model("lenet5", pretrained=str(code))
    with pytest.raises(WeightsSourceError, match="does not exist"):
        create_model("lenet5", pretrained=str(tmp_path / "absent.pt"))


class Payload:
    """What an unsafe pickle would run."""

    def __reduce__(self):
        return (print, ("code from a weights file ran",))


def test_pretrained_true_loads_the_registered_weights(tmp_path, monkeypatch, fresh_plugins):
    package = tmp_path / "bnn_zoo_under_test"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from bnn_models.small import lenet5\n\n\ndef tiny(**options):\n"
        "    return lenet5(width=4, **options)\n"
    )
    torch.manual_seed(3)
    model = create_model("lenet5", width=4)
    torch.save(model.state_dict(), package / "weights" / "tiny.pt")
    digest = sha256(package / "weights" / "tiny.pt")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_model(
        "zoo_tiny", "bnn_zoo_under_test:tiny", weights={"path": "weights/tiny.pt", "sha256": digest}
    )
    assert same_weights(create_model("zoo_tiny", pretrained=True), model)
    register_model(
        "zoo_broken",
        "bnn_zoo_under_test:tiny",
        weights={"path": "weights/tiny.pt", "sha256": "1" * 64},
    )
    with pytest.raises(WeightsIntegrityError, match="given with it"):
        create_model("zoo_broken", pretrained=True)
    with pytest.raises(WeightsSourceError, match="declares no pretrained weights"):
        create_model("lenet5", pretrained=True)


class MemoryHandler(PathHandler):
    """Serves ``mem://NAME`` from a dict of bytes."""

    files: dict[str, bytes] = {}

    def _get_supported_prefixes(self) -> list[str]:
        return ["mem://"]

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: object):
        return io.BytesIO(self.files[path.removeprefix("mem://")])


class MemoryPlugin:
    @bnn_core.hookimpl
    def bnn_register_path_handlers(self, register):
        register(MemoryHandler())


def test_a_plugin_registers_a_path_handler(trained, fresh_plugins):
    model, path = trained
    MemoryHandler.files["lenet5.pt"] = path.read_bytes()
    info = bnn_core.register_plugin(MemoryPlugin(), name="memory")
    assert info.registered == {"path_handler": ["mem://"]}
    loaded = create_model("lenet5", pretrained=f"mem://lenet5.pt#sha256={sha256(path)}")
    assert same_weights(loaded, model)
    with pytest.raises(WeightsIntegrityError):
        create_model("lenet5", pretrained=f"mem://lenet5.pt#sha256={'2' * 64}")
    with pytest.raises(WeightsSourceError, match="KeyError"):
        create_model("lenet5", pretrained=f"mem://other.pt#sha256={'2' * 64}")


def test_a_plugin_cannot_take_over_http(fresh_plugins):
    class Takeover(MemoryHandler):
        def _get_supported_prefixes(self) -> list[str]:
            return ["https://"]

    class Plugin:
        @bnn_core.hookimpl
        def bnn_register_path_handlers(self, register):
            register(Takeover)

    bnn_core.register_plugin(Plugin(), name="takeover")
    with pytest.raises(bnn_core.PluginError, match=r"'https://' is claimed by bnn's own"):
        create_model("lenet5", pretrained=f"https://host/w.pt#sha256={'0' * 64}")


def written(path: Path, text: str) -> Path:
    """``path``, holding ``text`` without its common indentation."""
    path.write_text(textwrap.dedent(text))
    return path


def recipe(tmp_path: Path, pretrained: str) -> str:
    body = f"""\
        version: 1
        name: pretrained
        model: {{name: lenet5, pretrained: "{pretrained}"}}
        binarize: default
        """
    return str(written(tmp_path / "recipe.yaml", body))


def test_cli_reports_a_bad_pretrained_with_exit_2(capsys, trained, tmp_path):
    _, path = trained
    code = main(["validate", recipe(tmp_path, "https://example.org/w.pt")])
    _, err = capsys.readouterr()
    assert code == 2 and "model: pretrained: the remote weights" in err and "no SHA-256" in err
    assert "Traceback" not in err and "#sha256=" in err
    code = main(["summary", recipe(tmp_path, f"{path}#sha256={'3' * 64}")])
    _, err = capsys.readouterr()
    assert code == 2 and "have SHA-256" in err and "Traceback" not in err
    assert main(["summary", recipe(tmp_path, str(path))]) == 0


def test_a_distillation_teacher_takes_pretrained_weights(trained, tmp_path):
    from bnn.recipe import load_recipe
    from bnn.training.distill import build_teacher

    model, path = trained
    file = written(
        tmp_path / "teacher.yaml",
        f"""\
        version: 1
        name: taught
        model: lenet5
        binarize: default
        distillation:
          teacher: {{name: lenet5, pretrained: "{path}"}}
        """,
    )
    teacher = build_teacher(load_recipe(file).distillation)
    assert same_weights(teacher, model)


def test_a_recipe_fine_tunes_from_a_binarized_models_weights(binarized, tmp_path):
    from bnn.recipe import load_recipe
    from bnn.training.trainer import Trainer

    binary, path = binarized
    file = written(
        tmp_path / "fine_tune.yaml",
        f"""\
        version: 1
        name: fine_tune
        model: {{name: lenet5, pretrained: "{path}"}}
        binarize: {{bconfig: react, custom_config_layers_name: {{_first_: {{}}, _last_: {{}}}}}}
        data: {{dataset: fashion_mnist, batch_size: 16}}
        training: {{epochs: 1, optimizers: {{name: adam, lr: 0.0}}}}
        """,
    )
    recipe = load_recipe(file)
    assert same_weights(recipe.build_model(binarize=False), binary)
    assert same_weights(recipe.build_model(), binary)
    untouched = recipe.build_model(pretrained=False).conv2.activation_pre_process.bias
    assert not torch.equal(untouched, binary.conv2.activation_pre_process.bias)
    images = torch.randn(32, 1, 28, 28)
    data = torch.utils.data.TensorDataset(images, torch.arange(32) % 10)
    trainer = Trainer(
        recipe.build_model(binarize=False),
        data,
        None,
        recipe,
        binarize=recipe.binarize,
        model_builder=recipe.model.builder(),
        output_dir=tmp_path / "run",
        quiet=True,
    )
    trainer.fit()  # its first stage binarizes the binarized model again, keeping its state
    bias = trainer.model.conv2.activation_pre_process.bias
    assert torch.equal(bias, binary.conv2.activation_pre_process.bias)
    assert torch.equal(trainer.model.conv2.weight, binary.conv2.weight)
