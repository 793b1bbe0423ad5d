"""The fast slice of the ``.bnnpack`` fuzzer (tests/fuzzing/bnnpack.py): a few hundred
mutated files with a fixed seed must all be refused cleanly or run correctly. The long
run is ``scripts/fuzz_bnnpack.py --cases 10000``. The other tests check that the seeds
cover the format and that the runner really reports crashes, hangs, errors, unstable
and wrong outputs, each against the right file."""

from __future__ import annotations

import os
import shutil
import textwrap

from bnn_runtime.graph import OPS
from tests.bnnpack_edit import read_parts
from tests.fuzzing.bnnpack import check_files, child_environment, message_class, run_cases
from tests.fuzzing.seeds import seed_files

FAST_SLICE_CASES = 300
FAST_SLICE_SEED = 1


def test_seeds_cover_every_operation_and_pass_every_check():
    files = seed_files()
    ops = {node["op"] for path in files.values() for node in read_parts(path)[0]["graph"]["nodes"]}
    assert ops == set(OPS)
    results = check_files(list(files.values()))
    assert [r["outcome"] for r in results] == ["accepted"] * len(files), results


def test_fast_slice_of_the_fuzzer_finds_no_failure(tmp_path):
    report = run_cases(FAST_SLICE_CASES, FAST_SLICE_SEED, workers=2, keep_failures=tmp_path)
    assert sum(report.outcomes.values()) == report.cases == FAST_SLICE_CASES
    assert report.outcomes["rejected"] > FAST_SLICE_CASES // 2 and report.outcomes["accepted"]
    assert not report.failures, "\n".join(str(failure) for failure in report.failures)


# Loaded into every driver process by the test below: makes the files named here crash,
# hang, raise, or return outputs that change between runs or differ from the reference.
SABOTAGE = """
import os, signal, time
import numpy as np
from bnn_runtime import executor

_load = executor.load
_damaged = []


class Network:
    def __init__(self, network, kind):
        self.network, self.kind, self.input_shape = network, kind, network.input_shape

    def __call__(self, x):
        y = self.network(x)
        if self.kind == "unstable":
            return y + np.random.default_rng().random(y.shape, dtype=np.float32)
        return y + 1 if os.environ.get("BNN_RUNTIME_ISA") == "numpy" else y


def load(path, threads=None):
    name = os.path.basename(str(path))
    if name == "case-1.bnnpack" or (name == "case-9.bnnpack" and _damaged):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "case-3.bnnpack":
        time.sleep(60)
    if name == "case-4.bnnpack":
        raise KeyError("not a format error")
    if name == "case-8.bnnpack":
        _damaged.append(True)
    network = _load(path, threads)
    kinds = {"case-5.bnnpack": "unstable", "case-6.bnnpack": "mismatch"}
    return Network(network, kinds[name]) if name in kinds else network


executor.load = load
"""


def test_runner_blames_the_right_file_for_each_kind_of_failure(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(SABOTAGE))
    seed = seed_files()["mlp"]
    paths = [shutil.copyfile(seed, tmp_path / f"case-{i}.bnnpack") for i in range(10)]
    results = check_files(paths, env={"PYTHONPATH": str(hooks)}, timeout=1.5)
    outcomes = [result["outcome"] for result in results]
    assert outcomes == [
        "accepted", "crash", "accepted", "hang", "load-error",
        "unstable", "mismatch", "accepted", "accepted", "crash",
    ]  # fmt: skip
    assert "signal SIGSEGV" in results[1]["message"]
    assert results[4]["error"] == "KeyError"
    assert results[9]["message"].startswith("only after other files in one process")


def test_address_sanitizer_runs_without_an_address_space_limit():
    asan = {"LD_PRELOAD": "/usr/lib/libasan.so.8", "ASAN_OPTIONS": "detect_leaks=1:verbosity=0"}
    env, limit = child_environment(asan)
    assert limit == 0
    options = dict(item.split("=") for item in env["ASAN_OPTIONS"].split(":"))
    assert options["allocator_may_return_null"] == "1" and options["detect_leaks"] == "1"
    assert options["verbosity"] == "0"
    env, limit = child_environment({"LD_PRELOAD": ""})
    assert limit > 0 and env.get("ASAN_OPTIONS") == os.environ.get("ASAN_OPTIONS")


def test_message_classes_ignore_names_numbers_and_paths():
    first = "/tmp/a/x.bnnpack: node 'conv1' (conv2d): attribute 'groups' is 3, got [1, 2]"
    second = "/b.bnnpack: node 'fc' (conv2d): attribute 'stride' is 12, got [4]"
    assert message_class(first) == message_class(second)
    assert message_class(first) != message_class("the header's 'metadata' must be an object")
