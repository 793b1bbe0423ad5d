"""The fuzzer's child process: loads and runs a batch of ``.bnnpack`` files and prints
one result line per file. :mod:`tests.fuzzing.bnnpack` runs this file's source with
``python -c SOURCE JOB`` (``JOB``: a JSON file naming the cases), so it imports only the
standard library, NumPy and ``bnn_runtime``.

Unless ``BNN_RUNTIME_ISA`` is set for the whole process, each file runs on the kernel
path its case names (when this CPU has it). Before each file it prints a start line, so
the parent can tell which file was in flight when the process died or hung; everything
else the process writes (a sanitizer report, for example) lands between that file's
start and result lines.
"""

import json
import os
import resource
import sys
import traceback
import warnings
from pathlib import Path

MARK = "@@bnnfuzz "
ISA_VARIABLE = "BNN_RUNTIME_ISA"
#: Outputs of the kernels and of the NumPy reference agree within this fraction of
#: (1 + the reference's largest finite magnitude).
TOLERANCE = 1e-3


def emit(record):
    """One result line for the parent."""
    sys.stdout.write(MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def describe(exc):
    """The exception's type, message and the file and line that raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return {"error": type(exc).__name__, "message": str(exc)[:2000], "where": where}


def as_list(output):
    """A network's output (an array, or a tuple of several) as a list."""
    return list(output) if isinstance(output, tuple) else [output]


def same(first, second, np):
    """Bit-identical outputs (NaN equal to NaN)."""
    return len(first) == len(second) and all(
        a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
        for a, b in zip(first, second, strict=True)
    )


def disagreement(got, reference, np):
    """Why the kernels' outputs differ from the reference's, or None if they agree."""
    if len(got) != len(reference):
        return f"{len(got)} outputs, the reference has {len(reference)}"
    for index, (a, b) in enumerate(zip(got, reference, strict=True)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {index}: {a.dtype}{list(a.shape)}, reference {b.dtype}{list(b.shape)}"
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if not np.array_equal(np.isnan(a64), np.isnan(b64)):
            return f"output {index}: NaN in different places"
        finite = np.isfinite(b64)
        if not np.array_equal(a64[~finite & ~np.isnan(b64)], b64[~finite & ~np.isnan(b64)]):
            return f"output {index}: infinities differ"
        if finite.any():
            scale = 1.0 + float(np.abs(b64[finite]).max())
            error = (
                float(np.abs(a64[finite] - b64[finite]).max())
                if np.isfinite(a64[finite]).all()
                else float("inf")
            )
            if error > TOLERANCE * scale:
                return (
                    f"output {index}: differs from the reference by {error:.3g} (scale {scale:.3g})"
                )
    return None


def nonfinite(outputs, np):
    """Whether any output holds NaN or an infinity."""
    return any(not np.isfinite(y.astype(np.float64)).all() for y in outputs)


def run_input(network, x, np, errors):
    """Run ``x`` with the kernels twice and with the NumPy reference once; returns a
    result dict (``outcome`` set on failure or refusal) and the output shapes."""
    default_isa = os.environ.get(ISA_VARIABLE)
    try:
        first = as_list(network(x))
        second = as_list(network(x))
    except errors.RuntimeInputError as exc:
        return {"outcome": "input-refused", **describe(exc)}
    except BaseException as exc:
        return {"outcome": "run-error", **describe(exc)}
    if not same(first, second, np):
        return {"outcome": "unstable", "message": "two runs on the same input differ"}
    os.environ[ISA_VARIABLE] = "numpy"
    try:
        reference = as_list(network(x))
    except BaseException as exc:
        return {"outcome": "mismatch", "message": "the NumPy reference failed", **describe(exc)}
    finally:
        if default_isa is None:
            del os.environ[ISA_VARIABLE]
        else:
            os.environ[ISA_VARIABLE] = default_isa
    why = disagreement(first, reference, np)
    if why is not None:
        kind = "mismatch-nonfinite" if nonfinite(first + reference, np) else "mismatch"
        return {"outcome": kind, "message": why}
    return {"outcome": "accepted", "shapes": [list(y.shape) for y in first]}


def check(case, max_elements, np, load, errors):
    """Load one file and, if accepted, run it at its declared input shape, then at a
    larger and at a much smaller height and width."""
    try:
        network = load(case["path"], threads=case["threads"])
    except errors.RuntimeFormatError as exc:
        return {"outcome": "rejected", **describe(exc)}
    except BaseException as exc:
        return {"outcome": "load-error", **describe(exc)}
    shape = network.input_shape
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        return {"outcome": "bad-input-shape", "message": f"accepted input shape {shape}"}
    if 2 * int(np.prod(shape, dtype=np.float64)) > max_elements:
        return {"outcome": "accepted", "message": f"input {shape} too large to run"}
    rng = np.random.default_rng(case["input_seed"])
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    result = run_input(network, x, np, errors)
    if result["outcome"] != "accepted" or len(shape) != 3:
        return result
    c, h, w = shape
    for size in ((h + 3, w + 1), (1 + h // 5, 2 + w // 7)):
        other = rng.standard_normal((1, c, *size)).astype(np.float32)
        resized = run_input(network, other, np, errors)
        if resized["outcome"] not in ("accepted", "input-refused"):
            resized["message"] = f"at input {[1, c, *size]}: {resized.get('message', '')}"
            return resized
    return result


def main():
    """Run the job named on the command line."""
    job = json.loads(Path(sys.argv[1]).read_text())
    if job["memory_limit"]:
        limit = job["memory_limit"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    import numpy as np

    from bnn_runtime import _library

    if job["library"]:
        library = Path(job["library"])
        _library.library_path = lambda: library
    from bnn_runtime import dispatch, errors
    from bnn_runtime.executor import load

    np.seterr(all="ignore")
    forced = os.environ.get(ISA_VARIABLE)
    available = dispatch.available_isas()
    for case in job["cases"]:
        emit({"id": case["id"], "event": "start"})
        os.environ.pop(ISA_VARIABLE, None)
        if forced or case["isa"] in available:
            os.environ[ISA_VARIABLE] = forced or case["isa"]
        result = check(case, job["max_elements"], np, load, errors)
        emit({"id": case["id"], "event": "done", **result})


if __name__ == "__main__":
    main()
