"""Pieces shared by the benchmark scripts: data split, provenance, timing, result files."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import mudata as md
import numpy as np
import scvi
import torch

from scdx_scvi import SCDX
from scdx_scvi._allocator import trim_heap
from scdx_scvi._constants import MODALITY_ALIASES
from scdx_scvi.metrics import held_out_mask, label_composition
from scdx_scvi.metrics._tasks import HEADLINE, translation_scores

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def read(dataset: str) -> md.MuData:
    """Read ``../shared/data/<dataset>/<dataset>.h5mu``."""
    return md.read_h5mu(DATA / dataset / f"{dataset}.h5mu")


def split(mdata: md.MuData) -> tuple[md.MuData, md.MuData]:
    """Training and test cells of the canonical split (:func:`scdx_scvi.metrics.held_out_mask`)."""
    test = held_out_mask(mdata.n_obs)
    return mdata[~test].copy(), mdata[test].copy()


def kinds(mdata: md.MuData) -> dict[str, str]:
    """Modality kind of each ``mdata.mod`` name, by the package's aliases (``MODALITY_ALIASES``)."""
    return {
        name: kind
        for kind, aliases in MODALITY_ALIASES.items()
        for name in mdata.mod
        if name in aliases
    }


def headline(observed, predicted, target: str) -> float:
    """Return the headline translation metric of ``predicted`` against the raw ``observed``."""
    scores, _ = translation_scores(observed, predicted, target)
    return scores[HEADLINE[target]]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(script: str) -> dict:
    """The command, commit and hardware of this run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    device = f"cuda {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"
    return {
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "commit": commit,
        "hardware": f"{_cpu_name()} ({os.cpu_count()} logical cores), {device}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"scvi-tools {scvi.__version__}",
    }


class Results:
    """A JSON result file rewritten after every row, so partial runs keep their figures."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.payload = {**header, "results": []}
        path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, row: dict, key: str = "results") -> None:
        self.payload.setdefault(key, []).append(row)
        print(json.dumps(row), flush=True)
        self.path.write_text(json.dumps(self.payload, indent=2))


def open_results(script: str, args, train: md.MuData, test: md.MuData) -> Results:
    """Open the result file of a script: ``--out`` or ``results/<name>_<dataset>.json``."""
    name = Path(script).stem
    return Results(
        Path(args.out) if args.out else RESULTS / f"{name}_{args.dataset}.json",
        {
            "dataset": args.dataset,
            "n_train": int(train.n_obs),
            "n_test": int(test.n_obs),
            "settings": vars(args),
            **provenance(Path(script).name),
        },  # fmt: skip
    )


def rss_mib(field: str = "VmRSS") -> float:
    """The process's resident set (``"VmHWM"``: its high-water mark), MiB; NaN off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_high_water() -> bool:
    """Reset the kernel's high-water mark of the resident set (Linux); return whether it was."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc ``malloc_trim``).

    Called before each measurement, so that its peak does not hide in memory freed earlier.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim_heap()


def peak_memory_method() -> str:
    """How :func:`measured` takes the peak memory here (for a result file's header)."""
    if torch.cuda.is_available():
        return "cuda allocator"
    return "resident-set high-water mark" if reset_high_water() else "polled resident set"


def measured(fn, repeats: int = 1):
    """Run ``fn``; return its result, the seconds and the peak memory above the start (MiB).

    Freed memory is first handed back to the system (:func:`release_memory`). On a GPU the
    peak is the allocator's. On the CPU it is the kernel's high-water mark of the resident set,
    reset at the start (Linux; it also catches spikes shorter than a poll), else the resident
    set polled every 10 ms. With ``repeats > 1`` ``fn`` runs that many times: the result is
    the first run's, the seconds the median over the runs (a throughput that one slow run of a
    busy machine does not decide), the peak the largest.
    """
    return measured_together({"": fn}, repeats)[""]


def measured_together(calls: dict, repeats: int = 1, warmup: bool = False) -> dict:
    """:func:`measured` for several calls whose costs are compared, taken in turns.

    Round after round each call runs once, in order, so that every call meets the same states
    of the machine (a busy spell, the allocator's heap after a large call) rather than one call
    all of them. Returns ``{name: (result, seconds, peak)}`` with the first round's result, the
    median seconds and the largest peak, as :func:`measured`. With ``warmup`` each call first
    runs once untimed, in the same order, and that run's result is returned: what the first
    calls of a process pay once (kernels built for new shapes, a query's registration) is not
    counted as throughput.
    """
    first = {name: fn() for name, fn in calls.items()} if warmup else {}
    runs = {name: [] for name in calls}
    for _ in range(max(1, int(repeats))):
        for name, fn in calls.items():
            runs[name].append(_measured_once(fn))
    return {
        name: (
            first[name] if warmup else r[0][0],
            statistics.median(x[1] for x in r),
            max(x[2] for x in r),
        )
        for name, r in runs.items()
    }


def _measured_once(fn):
    """One run of :func:`measured`: result, seconds, peak MiB above the start."""
    release_memory()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    exact = reset_high_water()
    base_rss, peak = rss_mib(), [0.0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.01)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    if cuda:
        return result, seconds, (torch.cuda.max_memory_allocated() - base) / 2**20
    high = rss_mib("VmHWM") if exact else float("nan")
    return result, seconds, max(peak[0], rss_mib(), high if exact else 0.0) - base_rss


def share_autoencoder(base: SCDX, model: SCDX) -> None:
    """Give ``model`` the trained autoencoder (weights and split) of ``base``.

    A benchmark-only shortcut, not a library feature: it writes the module's state dict and the
    model's split and trained flag directly, so that several denoisers can be compared on one
    autoencoder without retraining it. A public ``SCDX.from_autoencoder(base, **options)`` would
    replace it.
    """
    state = {k: v for k, v in base.module.state_dict().items() if not k.startswith("diffusion.")}
    missing, unexpected = model.module.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("diffusion.") for k in missing)
    model.train_indices = base.train_indices
    model.validation_indices = base.validation_indices
    model.test_indices = base.test_indices
    model.is_trained_ = True


def retrain_diffusion(
    model: SCDX, n_channels: int | None = None, **train_kwargs
) -> tuple[SCDX, float, float]:
    """A new SCDX with ``model``'s autoencoder and split and a diffusion trained anew.

    The diffusion is the one ``SCDX(...)`` builds today with ``model``'s options (the current
    defaults for every option it was not given; ``n_channels`` overrides its width), trained with
    ``train_diffusion(**train_kwargs)``. Returns the new model, the training seconds and the
    peak memory (MiB) of :func:`measured`.
    """
    options = dict(model.init_params_["non_kwargs"])
    if n_channels is not None:
        options["n_channels"] = n_channels
    fresh = SCDX(model.adata, **options)
    share_autoencoder(model, fresh)
    _, seconds, peak = measured(
        lambda: fresh.train_diffusion(enable_progress_bar=False, **train_kwargs)
    )
    return fresh, seconds, peak


def condition_timesteps(model: SCDX) -> dict[str, int]:
    """The timestep at which each source modality enters the model's denoiser."""
    diffusion = model.module.diffusion
    return dict(zip(diffusion.modalities, diffusion.condition_timesteps.tolist(), strict=True))


def labels_of(data: md.MuData, labels_key: str | None) -> np.ndarray | None:
    """The cells' labels as strings, or ``None`` without a labels key."""
    return data.obs[labels_key].astype(str).to_numpy() if labels_key else None


def generation_request(
    train: md.MuData, test: md.MuData, labels_key: str | None
) -> tuple[dict, dict | int]:
    """What to generate and the real reference sample to draw, for a generation benchmark.

    Returns ``generate``'s arguments (the held-out composition over the labels with training
    cells, or as many cells as the held-out set) and the size or composition of the real-vs-real
    reference (:func:`scdx_scvi.metrics.reference_sample`): up to three times the held-out set.
    """
    train_labels, test_labels = labels_of(train, labels_key), labels_of(test, labels_key)
    n_reference = min(train.n_obs, 3 * test.n_obs)
    if labels_key is None:
        return {"n_cells": test.n_obs}, n_reference
    return (  # types without training cells cannot be asked for
        {"labels": label_composition(test_labels, known=train_labels)},
        label_composition(test_labels, n_reference, known=train_labels),
    )
