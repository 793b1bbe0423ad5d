"""The built-in datasets on small generated data in each on-disk format: what they
return, their transforms (standard and from config), root resolution and errors."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import IterableDataset

from bnn.cli import main
from bnn_core import create_dataset
from bnn_core.config import DatasetSpec, validate_model
from bnn_core.errors import ConfigError
from bnn_core.registries import REGISTRIES
from tests import datagen


@dataclass
class Case:
    """How to build a registered dataset on the generated data, and what it holds."""

    options: dict[str, Any]
    lengths: dict[str, int]
    shape: tuple[int, ...]
    num_classes: int
    raw_shape: tuple[int, ...] = ()  # a stored image, for checking transforms
    source_hint: str = ""  # part of the "how to get it" advice in errors
    expected_file: str = ""  # part of the "expected there" list in errors


CASES = {
    "fashion_mnist": Case(
        {},
        {"train": 30, "test": 20},
        (1, 28, 28),
        10,
        (1, 28, 28),
        "dataset-fashion-mnist",
        "train-images-idx3-ubyte",
    ),
    "mnist": Case(
        {},
        {"train": 30, "test": 20},
        (1, 28, 28),
        10,
        (1, 28, 28),
        "MNIST page",
        "train-labels-idx1-ubyte",
    ),
    "cifar10": Case(
        {},
        {"train": 30, "test": 10},
        (3, 32, 32),
        10,
        (3, 32, 32),
        "cifar-10-python.tar.gz",
        "data_batch_1",
    ),
    "cifar100": Case(
        {},
        {"train": 40, "test": 20},
        (3, 32, 32),
        100,
        (3, 32, 32),
        "cifar-100-python.tar.gz",
        "cifar-100-python/",
    ),
    "imagefolder": Case(
        {"image_size": 8},
        {"train": 12, "test": 6},
        (3, 8, 8),
        3,
        (3, 12, 12),
        "image-net.org",
        "<class>/<image>",
    ),
    "webdataset": Case(
        {"num_classes": 5, "preset": "imagenet", "image_size": 8},
        {"train": 20, "test": 6},
        (3, 8, 8),
        5,
        (3, 8, 8),
        "bnn data shard",
        "train-*.tar",
    ),
    "imagenet_wds": Case(
        {"image_size": 6},
        {"train": 8, "test": 4},
        (3, 6, 6),
        1000,
        (3, 8, 8),
        "image-net.org",
        "train-*.tar",
    ),
    "synthetic": Case({"length": 16, "shape": [3, 4, 4]}, {"train": 16, "test": 16}, (3, 4, 4), 10),
}
ROOTED = [name for name in CASES if name != "synthetic"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per dataset, named like it (so it also works as $BNN_DATA_ROOT)."""
    from bnn_core.shard_format import record_sizes

    root = tmp_path_factory.mktemp("data")
    datagen.write_idx(root / "fashion_mnist")
    datagen.write_idx(root / "mnist", compress=False)
    datagen.write_cifar10(root / "cifar10")
    datagen.write_cifar100(root / "cifar100")
    datagen.write_image_folder(root / "imagefolder", {"train": 4, "val": 2})
    for name, sizes, classes in (
        ("webdataset", ([3, 7, 1, 5, 4], [4, 2]), 5),
        ("imagenet_wds", ([5, 3], [4]), None),
    ):
        for split, split_sizes in zip(("train", "test"), sizes, strict=True):
            paths = datagen.write_tar_shards(root / name, split_sizes, split, num_classes=classes)
            record_sizes([(path, size) for path, size in zip(paths, split_sizes, strict=True)])
    return root


def build(name: str, data_root: Path, split: str = "train", **options: Any) -> Any:
    case = CASES[name]
    rooted = {"root": str(data_root / name)} if name in ROOTED else {}
    return create_dataset(name, split=split, **{**rooted, **case.options, **options})


def samples(dataset: Any) -> list[tuple[torch.Tensor, int]]:
    if isinstance(dataset, IterableDataset):
        return list(dataset)
    return [dataset[i] for i in range(len(dataset))]


def test_every_builtin_dataset_has_a_case():
    builtin = {e.name for e in REGISTRIES["dataset"].entries() if e.provider == "bnn_datasets"}
    assert builtin == set(CASES)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_dataset_returns_normalised_tensors_and_labels(name, split, data_root):
    case = CASES[name]
    dataset = build(name, data_root, split)
    items = samples(dataset)
    assert len(items) == case.lengths[split] == len(dataset)
    for image, label in items:
        assert image.shape == case.shape and image.dtype == torch.float32
        assert isinstance(label, int) and 0 <= label < case.num_classes
    assert dataset.num_classes == case.num_classes
    if name != "synthetic":  # normalised with the data set's statistics
        stacked = torch.stack([image for image, _ in items])
        assert stacked.min() < 0
        assert stacked.abs().max() < 5


AUGMENTING = [name for name in CASES if name != "synthetic"]


@pytest.mark.parametrize("name", AUGMENTING)
def test_training_augmentation_differs_from_evaluation(name, data_root):
    case = CASES[name]
    train = build(name, data_root, "train", augment=True)
    evaluation = build(name, data_root, "test", augment=True)
    plain = build(name, data_root, "train", augment=False)
    image = torch.randint(0, 256, case.raw_shape, dtype=torch.uint8)
    torch.manual_seed(0)
    draws = [train.transform(image) for _ in range(8)]
    assert all(d.shape == case.shape for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:]), "augmentation is random"
    for deterministic in (evaluation, plain):
        first, second = deterministic.transform(image), deterministic.transform(image)
        assert first.shape == case.shape and torch.equal(first, second)
    assert [type(t) for t in train.transform.stage] != [type(t) for t in plain.transform.stage]


def test_standard_pipelines_are_the_documented_ones(data_root):
    cifar = build("cifar10", data_root, "train")
    assert [type(t).__name__ for t in cifar.transform.stage] == [
        "RandomCrop",
        "RandomHorizontalFlip",
    ]
    assert cifar.transform.stage[0].padding == [4, 4, 4, 4]
    assert build("cifar10", data_root, "test").transform.stage == []
    assert build("fashion_mnist", data_root, "train").transform.stage == []  # off by default
    imagenet = build("imagefolder", data_root, "train", image_size=224)
    assert [type(t).__name__ for t in imagenet.transform.stage] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
    ]
    evaluation = build("imagefolder", data_root, "test", image_size=224).transform.stage
    assert [(type(t).__name__, t.size) for t in evaluation] == [
        ("Resize", [256]),
        ("CenterCrop", (224, 224)),
    ]


@pytest.mark.parametrize("name", AUGMENTING)
def test_transforms_from_config_replace_the_stage(name, data_root):
    rooted = {"root": str(data_root / name)}
    spec = DatasetSpec.model_validate(
        {
            "name": name,
            **rooted,
            **CASES[name].options,
            "transforms": [{"name": "RandomVerticalFlip", "p": 1.0}],
            "eval_transforms": [{"name": "random_vertical_flip", "p": 1.0}],
        }
    )
    for split in ("train", "test"):
        stage = spec.build(split=split).transform.stage
        assert [type(t).__name__ for t in stage] == ["RandomVerticalFlip"]
    assert spec.model_dump()["transforms"] == [{"name": "RandomVerticalFlip", "p": 1.0}]


def test_transform_override_changes_the_samples(data_root):
    flipped = build(
        "cifar10", data_root, "test", eval_transforms=[{"name": "RandomVerticalFlip", "p": 1}]
    )
    plain = build("cifar10", data_root, "test")
    assert torch.equal(flipped[3][0], plain[3][0].flip(-2))
    composed = build(
        "cifar10",
        data_root,
        "train",
        transforms=[
            {"name": "RandomApply", "transforms": [{"name": "RandomVerticalFlip", "p": 1}], "p": 1},
            {"name": "Resize", "size": 16, "interpolation": "bicubic"},
        ],
    )
    assert composed[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "RandomCrp", "size": 32}, "Did you mean RandomCrop"),
        ({"name": "Lambda", "lambd": "print"}, "unknown transform 'Lambda'"),
        ({"name": "os.system"}, "unknown transform 'os.system'"),
        ({"name": "torchvision.transforms.v2:RandomCrop"}, "unknown transform"),
        ({"name": "RandomCrop", "sise": 32}, "Its arguments: RandomCrop(size"),
        ({"name": "Resize", "size": 8, "interpolation": "bicubicc"}, "unknown interpolation"),
        ({"size": 32}, "a transform is written as {name:"),
    ],
)
def test_bad_transforms_are_config_errors(spec, message):
    with pytest.raises(ConfigError) as error:
        validate_model(DatasetSpec, {"name": "cifar10", "transforms": [spec]}, "data")
    assert message in str(error.value) and "transforms" in str(error.value)


@pytest.mark.parametrize("name", ROOTED)
def test_missing_root_names_path_expected_files_and_source(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as error:
        create_dataset(name, root=str(missing), split="train")
    message = str(error.value)
    case = CASES[name]
    assert str(missing) in message and case.expected_file in message
    assert case.source_hint in message and "\n" not in message


@pytest.mark.parametrize("name", ROOTED)
def test_root_defaults_to_the_environment_variable(name, data_root, monkeypatch):
    monkeypatch.setenv("BNN_DATA_ROOT", str(data_root))
    dataset = create_dataset(name, split="test", **CASES[name].options)
    expected = 2000 if name == "fashion_mnist" else CASES[name].lengths["test"]  # embedded
    assert len(dataset) == expected


@pytest.mark.parametrize("name", [n for n in ROOTED if n != "fashion_mnist"])
def test_no_root_and_no_environment_variable_is_explained(name, monkeypatch):
    monkeypatch.delenv("BNN_DATA_ROOT", raising=False)
    with pytest.raises(ConfigError, match=rf"BNN_DATA_ROOT/{name} is used"):
        create_dataset(name)


def test_root_expands_home_and_variables(data_root, monkeypatch):
    monkeypatch.setenv("HOME", str(data_root))
    monkeypatch.setenv("MY_DATA", str(data_root))
    assert len(create_dataset("cifar10", root="~/cifar10")) == 30
    assert len(create_dataset("cifar10", root="$MY_DATA/cifar10", split="test")) == 10
    assert len(create_dataset("mnist", root="${MY_DATA}/mnist")) == 30
    monkeypatch.delenv("MY_DATA")
    with pytest.raises(ConfigError, match=r"\$MY_DATA, which is not set"):
        create_dataset("cifar10", root="$MY_DATA/cifar10")


def test_embedded_fashion_mnist_is_a_balanced_subset(monkeypatch):
    monkeypatch.setenv("BNN_DATA_ROOT", "/nonexistent")  # the embedded subset needs no root
    train, test = create_dataset("fashion_mnist"), create_dataset("fashion_mnist", split="test")
    assert (len(train), len(test)) == (12000, 2000)
    assert torch.bincount(train.targets).tolist() == [1200] * 10
    assert torch.bincount(test.targets).tolist() == [200] * 10
    assert train.images.shape == (12000, 1, 28, 28) and train.images.dtype == torch.uint8
    image, label = train[0]
    assert image.shape == (1, 28, 28) and train.classes[label]


def test_embedded_default_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="bnn_datasets.idx"):
        create_dataset("fashion_mnist", split="test")
    assert "embedded subset" in caplog.text


def test_val_split_reads_the_test_set(data_root):
    assert len(build("cifar10", data_root, "val")) == 10
    assert len(build("mnist", data_root, "val")) == 20


def test_cifar_root_may_be_the_batches_folder(data_root):
    dataset = create_dataset("cifar10", root=str(data_root / "cifar10" / "cifar-10-batches-py"))
    assert len(dataset) == 30 and dataset.classes[:2] == ["airplane", "automobile"]


def test_cifar100_coarse_labels(data_root):
    dataset = build("cifar100", data_root, labels="coarse")
    assert dataset.num_classes == 20 and dataset.classes[0] == "coarse0"
    fine = build("cifar100", data_root)
    assert torch.equal(dataset.targets, fine.targets // 5)


def test_cifar_pickles_may_not_run_code(data_root, tmp_path):
    class Payload:
        def __reduce__(self):
            return print, ("this must not run",)

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for file in (data_root / "cifar10" / "cifar-10-batches-py").iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Payload(), "labels": []}))
    with pytest.raises(ConfigError, match=r"data_batch_3.*builtins.print is not allowed"):
        create_dataset("cifar10", root=str(tmp_path))


def test_idx_reads_torchvision_download_folder_and_checks_labels(tmp_path):
    datagen.write_idx(tmp_path / "MNIST" / "raw", train=10, test=5)
    assert len(create_dataset("mnist", root=str(tmp_path))) == 10
    datagen.write_idx_file(
        tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz",
        datagen.balanced_labels(5, 10) + 10,
    )
    with pytest.raises(ConfigError, match=r"outside \[0, 10\)"):
        create_dataset("mnist", root=str(tmp_path), split="test")


def test_imagefolder_without_split_folders_uses_the_whole_tree(tmp_path, caplog):
    datagen.write_image_folder(tmp_path, {"": 2}, classes=("b", "a"))
    with caplog.at_level(logging.WARNING, logger="bnn_datasets.folder"):
        train = create_dataset("imagefolder", root=str(tmp_path), image_size=8)
        test = create_dataset("imagefolder", root=str(tmp_path), split="test", image_size=8)
    assert len(train) == len(test) == 4 and train.classes == ["a", "b"]
    assert "no split folders" in caplog.text


def test_imagefolder_labels_are_shared_across_splits(tmp_path):
    datagen.write_image_folder(tmp_path, {"train": 1}, classes=("a", "b", "c"))
    datagen.write_image_folder(tmp_path, {"val": 1}, classes=("c",))
    val = create_dataset("imagefolder", root=str(tmp_path), split="val", image_size=8)
    assert val.classes == ["a", "b", "c"] and [label for _, label in val.samples] == [2]
    only_train = datagen.write_image_folder(tmp_path / "other", {"train": 1})
    with pytest.raises(ConfigError, match="split folders train but none for split 'test'"):
        create_dataset("imagefolder", root=str(only_train), split="test")


def test_imagefolder_grey_images_with_one_channel_statistics(tmp_path):
    datagen.write_image_folder(tmp_path, {"train": 2})
    dataset = create_dataset(
        "imagefolder", root=str(tmp_path), preset="mnist", image_mode="L", augment=False
    )
    assert dataset[0][0].shape == (1, 12, 12)
    with pytest.raises(ConfigError, match="1 channel"):
        create_dataset("imagefolder", root=str(tmp_path), image_mode="L", image_size=8)[0]


def test_synthetic_splits_differ():
    train, test = (
        create_dataset("synthetic", length=4),
        create_dataset("synthetic", length=4, split="test"),
    )
    assert not torch.equal(train.inputs, test.inputs)
    assert torch.equal(train.inputs, create_dataset("synthetic", length=4).inputs)


def test_cli_missing_root_exits_2_with_one_paragraph(tmp_path, capsys):
    code = main(
        [
            "data",
            "shard",
            "cifar10",
            "--root",
            str(tmp_path / "x"),
            "-o",
            str(tmp_path / "s-%06d.tar"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("bnn data: error: cifar10: no data found at")
    assert err.count("\n") == 1 and "cifar-10-python.tar.gz" in err
