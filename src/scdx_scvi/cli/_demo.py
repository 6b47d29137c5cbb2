"""The end-to-end demo behind ``scdx demo``: train, generate, translate, score and report.

:func:`run_demo` loads paired data (the built-in simulator by default, or a ``.h5mu`` file),
holds out a fifth of the cells, trains :class:`~scdx_scvi.SCDX` on the others, generates new
cells of the held-out cell types, translates the held-out cells from one modality into the other
in both directions, scores both with the package's score sets
(:func:`~scdx_scvi.metrics.translation_score_set`,
:func:`~scdx_scvi.metrics.generation_score_set`) against controls fitted on the same training
cells and a real-vs-real floor, and writes everything (model, cells, figures, ``metrics.json``
and a readable ``report.md``) to one output folder. A failed run removes the folder if it
created it.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scdx_scvi.metrics import (
    REFERENCE_NAME,
    generation_score_set,
    held_out_mask,
    joint_embedding,
    label_composition,
    reference_sample,
    translation_controls,
    translation_directions,
    translation_score_set,
)
from scdx_scvi.metrics._tasks import GENERATION_SEEDS, KNN_NAME, KNN_NEIGHBOURS

from ._inputs import DISPLAY, DemoConfig, DemoData, DemoInputError, load_data, quiet_libraries
from ._report import write_report
from ._tables import SCDX_NAME, print_tables

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData

    from scdx_scvi import SCDX


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: scores, timings and the files written."""

    out: Path
    metrics: dict[str, Any]
    files: list[str] = field(default_factory=list)


def _say(message: str) -> None:
    print(message, flush=True)


def direction_name(source: str, target: str) -> str:
    """``"ATAC->RNA"``: the name of a direction in tables and ``metrics.json``."""
    return f"{DISPLAY[source]}->{DISPLAY[target]}"


def train_model(train: MuData, data: DemoData, config: DemoConfig) -> SCDX:
    """Register the training cells and train SCDX: the autoencoder, then the diffusion.

    By default this is ``SCDX(mdata)`` and ``model.train()``: the package defaults. The size
    (architecture, U-Net width) and the training budget (epochs, steps) can be set.

    Parameters
    ----------
    train
        Training cells (registered in place; pass a copy of the user's data).
    data
        The loaded data (modalities and cell-type column).
    config
        Demo settings.

    Returns
    -------
    The trained model.
    """
    import scvi

    from scdx_scvi import SCDX

    scvi.settings.seed = config.seed
    SCDX.setup_mudata(
        train,
        labels_key=data.labels_key,
        modalities={f"{m}_layer": mod for m, mod in data.modalities.items()},
    )
    options = {"architecture": config.architecture, "n_channels": config.n_channels}
    model = SCDX(train, **{key: value for key, value in options.items() if value is not None})
    budget = model.training_budget
    _say(
        f"[2/6] Training SCDX: autoencoder (at most {config.max_epochs or budget['max_epochs']} "
        "epochs), then latent diffusion (at most "
        f"{config.diffusion_steps or budget['max_steps_diffusion']:,} steps; its bar counts "
        "passes over the cells)"
    )
    model.train(
        max_epochs=config.max_epochs,
        max_steps_diffusion=config.diffusion_steps,
        accelerator=config.accelerator,
        enable_progress_bar=config.progress,
    )
    return model


def _last(history: dict | None, key: str) -> float | None:
    """Return the last value of a history column, or ``None``."""
    if not history or key not in history or len(history[key]) == 0:
        return None
    return float(history[key].iloc[-1, 0])


def training_summary(model: SCDX, config: DemoConfig) -> dict[str, Any]:
    """Epochs and steps the two training stages ran, with their final validation losses.

    Parameters
    ----------
    model
        The trained model.
    config
        Demo settings (the maxima).

    Returns
    -------
    A dict for ``metrics.json`` and the report.
    """
    ran, budget = model.epochs_trained, model.training_budget
    return {
        "architecture": model.options["architecture"],
        "n_channels": model.options["n_channels"],
        "package_defaults": config.architecture
        is config.n_channels
        is config.max_epochs
        is config.diffusion_steps
        is None,
        "autoencoder_epochs": ran["autoencoder"],
        "autoencoder_max_epochs": config.max_epochs or budget["max_epochs"],
        "autoencoder_validation_loss": _last(model.history, "validation_loss"),
        "diffusion_steps": ran["diffusion_steps"],
        "diffusion_max_steps": config.diffusion_steps or budget["max_steps_diffusion"],
        "diffusion_epochs": ran["diffusion"],
        "diffusion_validation_loss": _last(model.diffusion_history, "diffusion_loss_validation"),
        "device": str(model.device),
    }


def _generation_sampler() -> str:
    """Name the default sampler of :meth:`~scdx_scvi.SCDX.generate` and its step count."""
    import inspect

    from scdx_scvi import SCDX
    from scdx_scvi.diffusion import SAMPLERS

    name = inspect.signature(SCDX.generate).parameters["sampler"].default
    return f"{name} ({SAMPLERS[name].default_steps} steps)"


def translate_held_out(
    model: SCDX, held_out: MuData, data: DemoData, config: DemoConfig
) -> dict[tuple[str, str], AnnData]:
    """Translate the held-out cells, giving the model only an AnnData of the source modality.

    Parameters
    ----------
    model
        The trained model.
    held_out
        Held-out cells with every modality (only the source is passed to the model).
    data
        The loaded data (modality names and cell-type column).
    config
        Demo settings (seed, progress bars).

    Returns
    -------
    ``{(source, target): AnnData}`` of the predicted targets, with the held-out cell types in
    ``obs`` when there are labels.
    """
    import pandas as pd

    out = {}
    for source, target in translation_directions(data.modalities):
        query = held_out.mod[data.modalities[source]].copy()
        result = model.get_translated_modality(
            query, source, target, seed=config.seed, progress=config.progress
        )
        if data.labels_key is not None and data.labels_key not in result.obs:
            result.obs[data.labels_key] = pd.Categorical(held_out.obs[data.labels_key])
        out[source, target] = result
    return out


def score_translations(
    translated: dict[tuple[str, str], AnnData], train: MuData, held_out: MuData, data: DemoData
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Score SCDX and the controls per direction; return the scores and per-feature values."""
    labels = _labels(data, train), _labels(data, held_out)
    summary, per_feature = {}, {}
    for (source, target), prediction in translated.items():
        s, t = data.modalities[source], data.modalities[target]
        controls = translation_controls(train[s].X, train[t].X, held_out[s].X, source, target)
        result = translation_score_set(
            held_out[t].X, {SCDX_NAME: prediction.X, **controls}, target, train[t].X, *labels
        )
        per_feature[source, target] = result.pop("per_feature")
        summary[direction_name(source, target)] = {"source": source, "target": target, **result}
    return summary, per_feature


def _labels(data: DemoData, cells: MuData) -> np.ndarray | None:
    if data.labels_key is None:
        return None
    return cells.obs[data.labels_key].astype(str).to_numpy()


def score_generation(
    train: MuData, held_out: MuData, generated: MuData, data: DemoData, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Score the generated cells and the real-vs-real floor against the held-out cells.

    The floor is a real sample of training cells with the held-out composition, three times the
    held-out size where the training cells allow (each seed draws its own equal-sized subsample).
    """
    n_reference = min(train.n_obs, 3 * held_out.n_obs)
    train_labels, held_out_labels = _labels(data, train), _labels(data, held_out)
    if data.labels_key is not None:
        composition = label_composition(held_out_labels, n_reference, known=train_labels)
    else:
        composition = n_reference
    rows = reference_sample(train.n_obs, composition, train_labels, seed)
    set_labels = {SCDX_NAME: _labels(data, generated)}
    if train_labels is not None:
        set_labels[REFERENCE_NAME] = train_labels[rows]
    out = {}
    for m, mod in data.modalities.items():
        sets = {SCDX_NAME: generated[mod].X, REFERENCE_NAME: train[mod].X[rows]}
        out[m] = generation_score_set(
            held_out[mod].X, sets, m, held_out_labels, set_labels, seeds=GENERATION_SEEDS
        )
    return out


def draw_figures(
    held_out: MuData,
    generated: MuData,
    data: DemoData,
    per_feature: dict[tuple[str, str], dict[str, np.ndarray]],
    out: Path,
    seed: int,
) -> dict[str, str]:
    """Draw the UMAPs and the per-gene scatter (PNG); return them relative to ``out``."""
    from scdx_scvi.pl import feature_scatter, umap_real_vs_generated

    (out / "figures").mkdir(exist_ok=True)
    figures = {}
    labels = None
    if data.labels_key is not None:
        labels = {"real (held out)": _labels(data, held_out), "generated": _labels(data, generated)}
    for m, mod in data.modalities.items():
        pair = joint_embedding(held_out[mod].X, generated[mod].X, m, random_state=seed)
        fig = umap_real_vs_generated(
            {"generated": pair}, labels, title=DISPLAY[m], real_name="real (held out)", seed=seed
        )
        path = out / "figures" / f"umap_{m}.png"
        fig.savefig(path, dpi=110)
        figures[path.stem] = path.relative_to(out).as_posix()
    to_rna = [pair for pair in per_feature if pair[1] == "rna"]
    if to_rna:
        source, target = to_rna[0]
        values = per_feature[source, target]
        fig = feature_scatter(
            {SCDX_NAME: values[SCDX_NAME], f"{KNN_NAME} (k={KNN_NEIGHBOURS})": values[KNN_NAME]},
            SCDX_NAME, "Pearson per gene", title=direction_name(source, target),
        )  # fmt: skip
        path = out / "figures" / "pearson_per_gene_scdx_vs_knn.png"
        fig.savefig(path, dpi=110)
        figures["feature_scatter"] = path.relative_to(out).as_posix()
    return figures


class _Stopwatch:
    """Records the wall-clock seconds of named steps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def _output_folder(out: Path) -> Iterator[Path]:
    """Create ``out`` if needed; on failure, remove it again if it was created here."""
    if out.exists() and not out.is_dir():
        raise DemoInputError(f"--out {out} exists and is not a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _translation_file(source: str, target: str, directions: list[tuple[str, str]]) -> str:
    """``translated_<target>.h5ad``, naming the source when two directions share a target."""
    shared = sum(t == target for _, t in directions) > 1
    return f"translated_{target}_from_{source}.h5ad" if shared else f"translated_{target}.h5ad"


def _describe_split(data: DemoData, train: MuData, held_out: MuData) -> str:
    sizes = ", ".join(
        f"{DISPLAY[m]} {data.mdata.mod[mod].n_vars:,}" for m, mod in data.modalities.items()
    )
    labels = (
        f"{data.mdata.obs[data.labels_key].nunique()} cell types ({data.labels_key!r})"
        if data.labels_key
        else "no cell-type labels"
    )
    return (
        f"  {data.description}\n  {data.mdata.n_obs:,} cells ({sizes} features), {labels}; "
        f"{train.n_obs:,} training and {held_out.n_obs:,} held-out cells"
    )


def _check_split(train: MuData, held_out: MuData) -> None:
    if held_out.n_obs < 5 or train.n_obs <= KNN_NEIGHBOURS:
        raise DemoInputError(
            f"too few cells: {train.n_obs} training and {held_out.n_obs} held-out; the demo "
            f"needs more than {KNN_NEIGHBOURS} training and at least 5 held-out cells"
        )


def _machine() -> str:
    import torch

    device = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU only"
    return f"{platform.machine()}, {device}, {torch.get_num_threads()} torch threads"


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def run_demo(config: DemoConfig, command: str = "scdx demo") -> DemoResult:
    """Run the demo end to end and write its output folder.

    Steps: load the data, hold out cells (:func:`~scdx_scvi.metrics.held_out_mask`), train
    SCDX (:func:`train_model`), generate cells with the held-out composition, translate the
    held-out cells both ways (:func:`translate_held_out`), score everything against the controls
    and the real-vs-real floor, draw the figures and write ``model/``, ``generated.h5mu``,
    ``translated_*.h5ad``, ``figures/``, ``metrics.json`` and ``report.md`` to ``config.out``.
    If a step fails, a folder that the run created is removed again (a folder that existed
    before is left as it is).

    Parameters
    ----------
    config
        Demo settings.
    command
        The command line, for the report.

    Returns
    -------
    The output folder, the metrics and the files written.
    """
    with quiet_libraries(), _output_folder(Path(config.out)) as out:
        return _run(config, command, out)


def _run(config: DemoConfig, command: str, out: Path) -> DemoResult:
    """Run the steps of :func:`run_demo`."""
    import scdx_scvi

    clock, files = _Stopwatch(), []
    _say("[1/6] Loading data")
    with clock("load and split the data"):
        data = load_data(config)
        test = held_out_mask(data.mdata.n_obs, config.seed)
        train, held_out = data.mdata[~test].copy(), data.mdata[test].copy()
    _check_split(train, held_out)
    _say(_describe_split(data, train, held_out))

    with clock("train SCDX"):
        model = train_model(train, data, config)
    model.save(out / "model", overwrite=True, save_anndata=False)
    files.append("model/")
    training = training_summary(model, config)
    _say(
        f"  autoencoder {training['autoencoder_epochs']} epochs, diffusion "
        f"{training['diffusion_steps']} steps, in {clock.seconds['train SCDX']:.0f} s"
    )

    _say("[3/6] Generating cells")
    if data.labels_key is not None:
        known = train.obs[data.labels_key].astype(str).unique()
        request: dict[str, Any] = {
            "labels": label_composition(_labels(data, held_out), config.n_generate, known)
        }
    else:
        request = {"n_cells": config.n_generate or held_out.n_obs}
    with clock("generate cells"):
        generated = model.generate(**request, seed=config.seed, progress=config.progress)
    generated.write_h5mu(out / "generated.h5mu")
    files.append("generated.h5mu")
    _say(f"  {generated.n_obs:,} cells written to {out / 'generated.h5mu'}")

    _say("[4/6] Translating the held-out cells")
    directions = translation_directions(data.modalities)
    with clock("translate held-out cells"):
        translated = translate_held_out(model, held_out, data, config)
    translation_files = {}
    for (source, target), result in translated.items():
        name = _translation_file(source, target, directions)
        result.write_h5ad(out / name)
        files.append(name)
        translation_files[name] = direction_name(source, target)
        _say(f"  {direction_name(source, target)}: {result.shape[0]:,} cells -> {out / name}")

    _say("[5/6] Scoring against the controls and the real-vs-real floor")
    with clock("score translation (with the controls)"):
        translation, per_feature = score_translations(translated, train, held_out, data)
    with clock("score generation"):
        generation = score_generation(train, held_out, generated, data, config.seed)

    _say("[6/6] Writing figures and the report")
    figures: dict[str, str] = {}
    if config.figures:
        with clock("figures"):
            figures = draw_figures(held_out, generated, data, per_feature, out, config.seed)
        files += sorted(figures.values())
    files += ["metrics.json", "report.md"]
    metrics = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "version": scdx_scvi.__version__,
        "command": command,
        "machine": _machine(),
        "out": str(out),
        "settings": asdict(config),
        "data": {
            "description": data.description,
            "simulated": data.simulated,
            "n_cells": int(data.mdata.n_obs),
            "n_train": int(train.n_obs),
            "n_held_out": int(held_out.n_obs),
            "features": {m: int(data.mdata.mod[mod].n_vars) for m, mod in data.modalities.items()},
            "labels_key": data.labels_key,
            "n_cell_types": int(data.mdata.obs[data.labels_key].nunique())
            if data.labels_key
            else 0,
        },
        "training": training,
        "generation_cells": int(generated.n_obs),
        "generation_sampler": _generation_sampler(),
        "generation_seeds": len(GENERATION_SEEDS),
        "timings_seconds": {k: round(v, 1) for k, v in clock.seconds.items()},
        "translation": translation,
        "translation_files": translation_files,
        "generation": generation,
        "files": files,
    }
    metrics = _json_ready(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(out / "report.md", metrics, figures)
    print_tables(metrics)
    _say(f"\nReport: {out / 'report.md'}")
    return DemoResult(out=out, metrics=metrics, files=files)
