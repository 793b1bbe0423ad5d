"""Webdataset shards: every sample exactly once per epoch across ranks and DataLoader
workers, per-epoch shuffling, lengths, payload types, errors, and `bnn data shard`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from bnn.cli import main
from bnn_core import create_dataset
from bnn_core.errors import ConfigError
from bnn_core.shard_format import brace_pattern, record_sizes
from bnn_datasets.shards import ShardSelection
from tests import datagen

SIZES = [3, 7, 1, 5, 4]  # uneven on purpose: 20 samples, labelled 0..19


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    paths = datagen.write_tar_shards(folder, SIZES)
    record_sizes(list(zip(paths, SIZES, strict=True)))
    return folder


def read_epoch(folder: Path, epoch: int, rank: int, world_size: int, workers: int) -> list[int]:
    dataset = create_dataset(
        "webdataset",
        shards=str(folder / "train-{000000..000004}.tar"),
        rank=rank,
        world_size=world_size,
        shuffle_buffer=4,
    )
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    labels = [label for _, label in loader]
    assert len(labels) == len(dataset), "len() is what this rank reads in this epoch"
    return labels


def test_every_sample_exactly_once_per_epoch_across_ranks_and_workers(shards):
    orders = {}
    for epoch in (0, 1):
        per_rank = [read_epoch(shards, epoch, rank, 2, workers=2) for rank in (0, 1)]
        everything = per_rank[0] + per_rank[1]
        assert sorted(everything) == list(range(20)), f"epoch {epoch}: {per_rank}"
        orders[epoch] = per_rank
    assert orders[0] != orders[1], "each epoch has its own order"
    assert read_epoch(shards, 1, 0, 2, workers=2) == orders[1][0], (
        "an epoch's order is reproducible"
    )


def test_single_process_reads_everything_once(shards):
    assert sorted(read_epoch(shards, 0, 0, 1, workers=0)) == list(range(20))
    assert sorted(read_epoch(shards, 3, 0, 1, workers=2)) == list(range(20))


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_shard_assignment_partitions_the_shards(world_size, workers):
    names = [f"shard{i}" for i in range(5)]
    for epoch in range(3):
        read = []
        for rank in range(world_size):
            selection = ShardSelection(
                names, shuffle=True, seed=7, rank=rank, world_size=world_size
            )
            mine = selection.for_rank(epoch, rank, world_size)
            read += [shard for worker in range(workers) for shard in mine[worker::workers]]
        assert sorted(read) == names


def test_shard_order_depends_only_on_seed_and_epoch():
    names = [f"shard{i}" for i in range(8)]
    first = ShardSelection(names, shuffle=True, seed=1, rank=0, world_size=2)
    second = ShardSelection(names, shuffle=True, seed=1, rank=1, world_size=2)
    assert first.order(4) == second.order(4) != first.order(5)
    assert ShardSelection(names, shuffle=False).order(4) == names


def test_evaluation_reads_in_file_order_without_shuffling(shards):
    dataset = create_dataset("webdataset", root=str(shards), split="train", shuffle=False)
    assert [label for _, label in dataset] == list(range(20))
    default_eval = create_dataset(
        "webdataset", shards=str(shards / "train-000001.tar"), split="test"
    )
    assert [label for _, label in default_eval] == list(range(3, 10))


def test_lengths(shards):
    dataset = create_dataset("webdataset", root=str(shards))
    assert len(dataset) == dataset.total_length == 20
    ranks = [create_dataset("webdataset", root=str(shards), rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) + len(ranks[1]) == 20
    given = create_dataset("webdataset", root=str(shards), length=21, rank=0, world_size=2)
    assert len(given) == 11 and given.total_length == 21


def test_unknown_or_stale_sizes_leave_the_length_unknown(tmp_path):
    paths = datagen.write_tar_shards(tmp_path, [2, 2])
    dataset = create_dataset("webdataset", root=str(tmp_path))
    with pytest.raises(TypeError, match="length"):
        len(dataset)
    record_sizes([(paths[0], 2), (paths[1], 2)])
    assert len(create_dataset("webdataset", root=str(tmp_path))) == 4
    datagen.write_tar_shards(tmp_path, [2, 3])  # rewritten: the recorded size no longer holds
    with pytest.raises(TypeError):
        len(create_dataset("webdataset", root=str(tmp_path)))


def test_image_and_tensor_payloads_give_the_same_tensors(tmp_path):
    decoded = {}
    for payload in ("png", "pth", "npy"):
        datagen.write_tar_shards(tmp_path / payload, [3], payload=payload)
        items = list(create_dataset("webdataset", root=str(tmp_path / payload), shuffle=False))
        assert [label for _, label in items] == [0, 1, 2]
        for image, _ in items:
            assert image.shape == (3, 8, 8) and image.dtype == torch.float32
            assert image.min() >= 0 and image.max() <= 1  # preset none: scaled to [0, 1]
        decoded[payload] = torch.stack([image for image, _ in items])
    assert torch.equal(decoded["png"], decoded["pth"]) and torch.equal(
        decoded["png"], decoded["npy"]
    )


def test_grey_images_with_image_mode(tmp_path):
    datagen.write_tar_shards(tmp_path, [2])
    dataset = create_dataset("webdataset", root=str(tmp_path), image_mode="L", preset="mnist")
    assert next(iter(dataset))[0].shape == (1, 8, 8)


def test_split_placeholder_and_default_split_files(tmp_path):
    datagen.write_tar_shards(tmp_path, [2, 3], prefix="train")
    datagen.write_tar_shards(tmp_path, [4], prefix="val")
    pattern = "{split}-{000000..000001}.tar"
    assert len(list(create_dataset("webdataset", root=str(tmp_path), shards=pattern))) == 5
    test = create_dataset("webdataset", root=str(tmp_path), split="test")  # falls back to val
    assert len(list(test)) == 4
    listed = [str(tmp_path / "train-000000.tar"), str(tmp_path / "val-000000.tar")]
    assert len(list(create_dataset("webdataset", shards=listed))) == 6


def test_shards_from_the_environment_variable(tmp_path, monkeypatch):
    datagen.write_tar_shards(tmp_path / "imagenet_wds", [2], prefix="val")
    monkeypatch.setenv("BNN_DATA_ROOT", str(tmp_path))
    dataset = create_dataset("imagenet_wds", split="val", image_size=4)
    assert [image.shape for image, _ in dataset] == [(3, 4, 4)] * 2
    assert dataset.num_classes == 1000


def test_missing_shards_and_urls_are_config_errors(tmp_path):
    datagen.write_tar_shards(tmp_path, [1])
    with pytest.raises(ConfigError, match=r"2 of 3 shard\(s\) do not exist: .*train-000001.tar"):
        create_dataset("webdataset", shards=str(tmp_path / "train-{000000..000002}.tar"))
    with pytest.raises(ConfigError, match="only local files are read"):
        create_dataset("webdataset", shards="pipe:cat /etc/passwd")
    with pytest.raises(ConfigError, match="cannot be split across 2 ranks"):
        create_dataset("webdataset", root=str(tmp_path), rank=0, world_size=2)
    with pytest.raises(ConfigError, match="both rank and world_size"):
        create_dataset("webdataset", root=str(tmp_path), rank=0)


def test_labels_outside_the_classes_are_errors(tmp_path):
    datagen.write_tar_shards(tmp_path, [3])
    dataset = create_dataset("webdataset", root=str(tmp_path), num_classes=2, shuffle=False)
    with pytest.raises(ConfigError, match="label 2 is outside"):
        list(dataset)


def test_brace_pattern():
    assert brace_pattern("out/train-%06d.tar", 3) == "out/train-{000000..000002}.tar"
    assert brace_pattern("out/train-%d.tar", 12) == "out/train-{0..11}.tar"
    assert brace_pattern("out/train-%06d.tar", 1) == "out/train-000000.tar"


def _multiset(items) -> Counter:
    return Counter((label, image.numpy().tobytes()) for image, label in items)


def test_bnn_data_shard_round_trip_from_an_image_folder(tmp_path, capsys):
    tree = datagen.write_image_folder(tmp_path / "tree", {"train": 4, "val": 2})
    pattern = str(tmp_path / "shards" / "train-%06d.tar")
    code = main(["data", "shard", str(tree), "-o", pattern, "--maxcount", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "wrote 12 samples to 3 shard(s)" in out
    assert "train-{000000..000002}.tar" in out and "preset: imagenet, num_classes: 3}" in out
    options = {"preset": "none", "augment": False}
    shards = create_dataset("webdataset", root=str(tmp_path / "shards"), shuffle=False, **options)
    folder = create_dataset("imagefolder", root=str(tree), **options)
    assert len(shards) == len(folder) == 12
    assert _multiset(shards) == _multiset(folder[i] for i in range(len(folder)))
    labels = [label for _, label in shards]
    assert labels != sorted(labels), "samples are shuffled before writing"


def test_bnn_data_shard_round_trip_from_registered_datasets(tmp_path, capsys):
    root = datagen.write_idx(tmp_path / "mnist", train=12, test=7)
    pattern = str(tmp_path / "out" / "test-%03d.tar")
    code = main(["data", "shard", "mnist", "--root", str(root), "--split", "test", "-o", pattern])
    assert code == 0 and "preset: mnist" in capsys.readouterr().out
    shards = create_dataset("webdataset", root=str(tmp_path / "out"), split="test", preset="mnist")
    original = create_dataset("mnist", root=str(root), split="test")
    assert len(shards) == 7 and _multiset(shards) == _multiset(original[i] for i in range(7))

    root = datagen.write_cifar10(tmp_path / "cifar10")
    pattern = str(tmp_path / "cifar_shards" / "train-%06d.tar")
    assert main(["data", "shard", "cifar10", "--root", str(root), "-o", pattern]) == 0
    options = {"preset": "cifar10", "augment": False}
    shards = create_dataset("webdataset", root=str(tmp_path / "cifar_shards"), **options)
    original = create_dataset("cifar10", root=str(root), augment=False)
    assert _multiset(shards) == _multiset(original[i] for i in range(len(original)))

    pattern = str(tmp_path / "synthetic" / "train-%06d.tar")
    options = ["-O", "length=6", "-O", "shape=[2, 3, 3]"]
    assert main(["data", "shard", "synthetic", *options, "-o", pattern, "--no-shuffle"]) == 0
    stored = list(create_dataset("webdataset", root=str(tmp_path / "synthetic"), shuffle=False))
    generated = create_dataset("synthetic", length=6, shape=[2, 3, 3])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(stored, generated, strict=True))
    assert [label for _, label in stored] == generated.targets.tolist()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mnist", "-o", "out.tar"], "needs one number field"),
        (["no_such_data", "-o", "s-%d.tar"], "Unknown dataset 'no_such_data'"),
        (["synthetic", "-O", "length", "-o", "s-%d.tar"], "-O expects KEY=VALUE"),
        (["synthetic", "-O", "size=3", "-o", "s-%d.tar"], "unknown parameter 'size'"),
    ],
)
def test_bnn_data_shard_errors_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["data", "shard", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
