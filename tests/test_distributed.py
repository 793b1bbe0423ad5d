"""Data-parallel training on CPU: two processes launched by torchrun (gloo, loopback only)
train the same binary network as one process with the same global batch."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from bnn.training import checkpoint

# A BN-free binary MLP (batch norm would see each rank's half batch only) trained with
# the Python API; every rank saves its final weights, rank 0 the history.
SCRIPT = textwrap.dedent(
    """\
    import json
    import os
    import sys
    from collections import OrderedDict

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from bnn import BConfig, prepare_binary_model
    from bnn.training.trainer import train

    folder = sys.argv[1]
    patterns = torch.randn((4, 32), generator=torch.Generator().manual_seed(0))


    def split(length, seed):
        generator = torch.Generator().manual_seed(seed)
        targets = torch.randint(4, (length,), generator=generator)
        inputs = patterns[targets] + torch.randn((length, 32), generator=generator)
        return TensorDataset(inputs, targets)


    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(32, 64),
            act1=nn.Hardtanh(),
            fc2=nn.Linear(64, 64),
            act2=nn.Hardtanh(),
            fc3=nn.Linear(64, 4),
        )
    )
    bconfig = BConfig(
        activation_pre_process="ste_sign",
        weight_pre_process="xnor_weight",
        activation_post_process="basic_scale",
    )
    model = prepare_binary_model(
        model, bconfig, custom_config_layers_name={"fc1": BConfig(), "fc3": BConfig()}
    )
    config = {
        "seed": 3,
        "data": {"batch_size": 32},
        "training": {
            "epochs": 2,
            "optimizers": [
                {"name": "adam", "lr": 0.01, "groups": ["binary_weights", "binarizers"]},
                {"name": "sgd", "lr": 0.05, "momentum": 0.9, "groups": "others"},
            ],
        },
        "logging": {"plot": False},
    }
    result = train(
        model, split(256, 1), split(96, 2), config, output_dir=folder, device="cpu", quiet=True
    )
    rank = int(os.environ.get("RANK", "0"))
    torch.save(model.state_dict(), os.path.join(folder, f"rank{rank}.pt"))
    if rank == 0:
        with open(os.path.join(folder, "history.json"), "w") as handle:
            json.dump(result.history, handle)
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_gloo_processes_train_like_one_with_the_same_global_batch(
    tmp_path, monkeypatch, one_thread
):
    script = tmp_path / "train_mlp.py"
    script.write_text(SCRIPT)
    two, one = tmp_path / "two", tmp_path / "one"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    }
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        str(two),
    ]
    result = subprocess.run(
        launch,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"},
    )
    assert result.returncode == 0, result.stderr[-4000:]

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", [str(script), str(one)])
    runpy.run_path(str(script), run_name="__main__")

    ranks = [torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    alone = torch.load(one / "rank0.pt", weights_only=True)
    assert ranks[0].keys() == alone.keys()
    for key in alone:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # replicas stay identical
        torch.testing.assert_close(ranks[0][key], alone[key], atol=1e-5, rtol=0, msg=key)

    shared = json.loads((two / "history.json").read_text())
    single = json.loads((one / "history.json").read_text())
    assert [(r["stage"], r["epoch"]) for r in shared] == [("main", e) for e in (1, 2)]
    for mine, theirs in zip(shared, single, strict=True):
        for key in ("train_loss", "train_acc", "eval_loss", "eval_acc", "lr"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
    assert single[-1]["eval_acc"] > 0.8

    # only rank 0 writes the run's files; its checkpoint holds the shared weights
    assert sorted(p.name for p in two.iterdir()) == sorted(
        [
            ".lock",
            "config.yaml",
            "metrics.csv",
            "metrics.jsonl",
            "last.pt",
            "previous.pt",
            "best.pt",
            "rank0.pt",
            "rank1.pt",
            "history.json",
        ]
    )
    last = checkpoint.load(two / "last.pt")
    for key in alone:
        assert torch.equal(last["model"][key], ranks[0][key]), key
    assert last["global_step"] == 2 * 256 // 32
