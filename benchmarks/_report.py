"""The Markdown page of ``run.py``: tables, ratios to the peer, where SCDX loses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCDX = "SCDX"
REFERENCE = "real training cells"
#: Reference rows of the generation tables, never "best": the decoder's ceiling and the floor.
CEILING = "SCDX autoencoder reconstructions"
DISPLAY = {"rna": "RNA", "atac": "ATAC", "protein": "protein"}
#: Generation protocols of a run: ``"symmetric"`` (equal sizes, one embedding fitted on both
#: sets; folds that may split a test cell from its own draw) and :data:`GROUPED` (the same, with
#: the peer's samples and the reconstruction draws kept in one fold with their test cell).
GROUPED = "grouped pairs"
SYMMETRIC_PROTOCOLS = ("symmetric", GROUPED)

#: (key, column title, better): ``"high"``, ``"low"`` or ``"half"`` (closest to 0.5).
TRANSLATION_COLUMNS = {
    "atac": [
        ("auroc_per_peak", "per-peak AUROC", "high"),
        ("auprc_per_peak", "per-peak AUPRC", "high"),
        ("auroc_flat", "flat AUROC", "high"),
        ("auprc_flat", "flat AUPRC", "high"),
    ],
    "counts": [
        ("pearson_per_feature", "Pearson per feature", "high"),
        ("pearson_per_cell", "Pearson per cell", "high"),
        ("pearson_overall", "Pearson overall", "high"),
        ("spearman_per_feature", "Spearman per feature", "high"),
        ("spearman_per_cell", "Spearman per cell", "high"),
        ("rmse", "RMSE", "low"),
    ],
    "space": [
        ("foscttm", "FOSCTTM", "low"),
        ("label_accuracy", "label accuracy", "high"),
    ],
}
GENERATION_COLUMNS = [
    ("mmd_rbf", "MMD", "low"),
    ("energy_distance", "energy distance", "low"),
    ("classifier_auc", "RF AUC (cross-validated)", "half"),
    ("mixing", "mixing", "high"),
    ("label_accuracy", "label recovery", "high"),
    ("mmd_rbf_per_type_median", "MMD per type (median)", "low"),
]


# ----------------------------------------------------------------------------- tables


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if round(value, digits) == 0:
        value = 0.0  # no "-0.000"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _quality(value: float, better: str) -> float:
    """A number where larger is better."""
    return {"high": value, "low": -value, "half": -abs(value - 0.5)}[better]


def bold_best(values: list, better: str = "high") -> list[str]:
    """Values formatted, the best finite one(s) in bold; ``None`` and NaN are never best."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    top = max((_quality(v, better) for v in finite), default=None)
    return [
        f"**{_fmt(v)}**" if v in finite and _quality(v, better) == top else _fmt(v) for v in values
    ]


def _table(rows: list[dict], columns: list[tuple[str, str, str]], extra: list[str]) -> str:
    """A Markdown table with the best value of each metric column in bold (controls included,
    the real-cell ceiling excluded)."""
    columns = [c for c in columns if any(c[0] in r for r in rows)]
    ceiling = [r["model"].startswith("real") or r["model"] == CEILING for r in rows]
    cells = [[r["model"]] for r in rows]
    for key, _, better in columns:
        ranked = bold_best(
            [None if c else r.get(key) for r, c in zip(rows, ceiling, strict=True)], better
        )
        for row_cells, r, c, text in zip(cells, rows, ceiling, ranked, strict=True):
            row_cells.append(_fmt(r.get(key)) if c else text)
    head = ["model", *(title for _, title, _ in columns), *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, row_cells in zip(rows, cells, strict=True):
        row_cells += [_extra(r, e) for e in extra]
        lines.append("| " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


#: (key, column title) of the diagnostics table; ratios are set / held-out cells (1 is ideal).
DIAGNOSTIC_COLUMNS = [
    ("library_size_median", "library size (median)"),
    ("library_size_median_ratio", "ratio"),
    ("detected_median", "detected features (median)"),
    ("detected_median_ratio", "ratio"),
    ("feature_mean_log_pearson", "per-feature mean r"),
    ("feature_variance_log_pearson", "per-feature variance r"),
    ("zero_fraction_mae", "zero-fraction error"),
    ("mean_variance_slope", "mean-variance slope"),
    ("background", "background"),
]


def _diagnostics_table(rows: list[dict]) -> str:
    """The profile diagnostics of each generation set, the held-out cells' own first."""
    rows = [r for r in rows if "diagnostics" in r]
    if not rows:
        return ""
    real = {"model": "held-out cells", "diagnostics": rows[0]["diagnostics"]["real"]}
    rows = [real, *rows]
    columns = [c for c in DIAGNOSTIC_COLUMNS if any(c[0] in r["diagnostics"] for r in rows)]
    lines = [
        "| set | " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for r in rows:
        cells = [_fmt(r["diagnostics"].get(key), 2) for key, _ in columns]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _extra(row: dict, key: str) -> str:
    if key == "cells/s":
        if row.get("includes_training"):
            return "— (trains)"
        return _fmt(row.get("cells_per_second"), 1)
    if key == "peak MiB":
        return _fmt(row.get("peak_mib"), 0)
    return ""


def _ratio(a, b) -> str:
    if a is None or b is None or not b:
        return "—"
    return f"{a / b:.2f}×"


def directions(payload: dict) -> list[str]:
    """The translation directions of a run (``"source->target"``), in the order they ran."""
    return list(
        dict.fromkeys(r["direction"] for r in payload["results"] if r["task"] == "translation")
    )


def find_row(payload: dict, task: str, model: str, **where) -> dict:
    """The result row of ``model`` for ``task`` matching ``where`` (``{}`` if there is none)."""
    for r in payload["results"]:
        if r["task"] == task and r["model"] == model:
            if all(r.get(k) == v for k, v in where.items()):
                return r
    return {}


def _cost_table(payload: dict) -> str:
    peer = payload["peer"]
    training = {r["model"]: r for r in payload.get("training", [])}
    rows = payload["results"]

    lines = [f"| measure | SCDX | {peer} | SCDX / {peer} |", "|---|---|---|---|"]

    def line(title, a, b, digits=1):
        lines.append(f"| {title} | {_fmt(a, digits)} | {_fmt(b, digits)} | {_ratio(a, b)} |")

    line("training wall-clock (s)", training[SCDX].get("seconds"), training[peer].get("seconds"))
    line("training peak memory (MiB)", training[SCDX].get("peak_mib"),
         training[peer].get("peak_mib"))  # fmt: skip
    for direction in directions(payload):
        a = find_row(payload, "translation", SCDX, direction=direction)
        b = find_row(payload, "translation", peer, direction=direction)
        if b.get("includes_training"):
            b = {}
        pretty = _arrow(direction)
        line(f"translation {pretty} (cells/s)", a.get("cells_per_second"),
             b.get("cells_per_second"))  # fmt: skip
        line(f"translation {pretty} peak memory (MiB)", a.get("peak_mib"), b.get("peak_mib"))
    first = next(r["modality"] for r in rows if r["task"] == "generation")
    a = find_row(payload, "generation", SCDX, modality=first)
    b = find_row(payload, "generation", f"{peer} posterior samples", modality=first)
    line("generation (cells/s; peer: posterior samples)", a.get("cells_per_second"),
         b.get("cells_per_second"))  # fmt: skip
    line("generation peak memory (MiB)", a.get("peak_mib"), b.get("peak_mib"))
    return "\n".join(lines)


def _arrow(direction: str) -> str:
    source, target = direction.split("->")
    return f"{DISPLAY[source]} → {DISPLAY[target]}"


def _losses(payload: dict) -> list[str]:
    """Every metric on which SCDX's default is beaten by the peer or a control."""
    out = []
    rows = payload["results"]
    for r in rows:
        if r["model"] != SCDX:
            continue
        if r["task"] == "translation":
            target = r["direction"].split("->")[1]
            columns = TRANSLATION_COLUMNS["atac" if target == "atac" else "counts"]
            columns = columns + TRANSLATION_COLUMNS["space"]
            rivals = [x for x in rows if x["task"] == "translation" and x["direction"] ==
                      r["direction"] and not x["model"].startswith(SCDX)]  # fmt: skip
            where = _arrow(r["direction"])
        else:
            columns = GENERATION_COLUMNS
            rivals = [x for x in rows if x["task"] == "generation" and x["modality"] ==
                      r["modality"] and x["model"].startswith(payload["peer"])]  # fmt: skip
            where = f"generation, {DISPLAY[r['modality']]}"
        for key, title, better in columns:
            if r.get(key) is None or not np.isfinite(r[key]):
                continue
            beaten = [
                x for x in rivals
                if x.get(key) is not None and _quality(x[key], better) > _quality(r[key], better)
            ]  # fmt: skip
            if beaten:
                top = max(beaten, key=lambda x, k=key, b=better: _quality(x[k], b))
                out.append(
                    f"{where}, {title}: SCDX {_fmt(r[key])}, {top['model']} {_fmt(top[key])}"
                )
    return out


# ----------------------------------------------------------------------------- page


def _dispersion(run: dict) -> str:
    """The stage-1 dispersion learning rate of a run, where its record has it."""
    if "dispersion_lr" not in run:
        return ""
    if run["dispersion_lr"] is None:
        return ", NB dispersions at the network's lr"
    return f", NB dispersion lr {run['dispersion_lr']:g}"


def write_page(payload: dict, figures: list[Path], path: Path) -> Path:
    """Write the Markdown page of one benchmark run."""
    settings, peer = payload["settings"], payload["peer"]
    sample_steps = payload.get("translation_sample_steps", 25)  # 25 in records before the key
    rel = {f.name: f"{path.stem}/{f.name}" for f in figures}
    trained = {r["model"]: r for r in payload.get("training", [])}
    epochs = trained.get(peer, {}).get("epochs", settings["peer_epochs"])
    scdx_run = trained.get(SCDX, {})
    if "configuration" in scdx_run:  # runs of SCDX(mdata, configuration=...) + train()
        options = scdx_run["options"]
        given = {k: v for k, v in settings.items() if k in options and v is not None}
        model = (
            f'`SCDX(mdata, configuration="{scdx_run["configuration"]}"'
            + "".join(f", {k}={v!r}" for k, v in given.items())
            + ")` and `model.train()` "
            + (
                "(the package defaults)"
                if scdx_run["configuration"] == "scdx"
                and not given
                and settings["ae_epochs"] is None
                and settings["diffusion_steps"] is None
                else "(not the package defaults)"
            )
            + f': `architecture="{options["architecture"]}"`, the faithful DCA U-Net with '
            f"C = {options['n_channels']}, "
            f'`latent_scaling="{options["latent_scaling"]}"`, diffusion lr '
            f"{scdx_run['diffusion_lr']:g}" + _dispersion(scdx_run) + "; trained "
            f"{scdx_run['autoencoder_epochs']} autoencoder epochs (at most "
            f"{scdx_run['max_epochs']}) and {scdx_run['diffusion_steps']:,} diffusion steps "
            f"in {scdx_run['diffusion_epochs']} epochs (at most "
            f"{scdx_run['max_steps_diffusion']:,}), as they ran"
        )
    else:  # runs before the epoch count was recorded
        model = (
            f'`architecture="{settings["architecture"]}"`, at most {settings["ae_epochs"]} '
            "autoencoder epochs (the epochs that ran were not recorded), at most "
            f"{settings['diffusion_steps']:,} diffusion steps, the faithful DCA U-Net with "
            f"C = {settings['n_channels']}, lr {settings['lr']:g}, "
            f'`latent_scaling="{settings["latent_scaling"]}"`, other options at the package '
            "defaults of the time"
        )
    if scdx_run.get("loaded") and scdx_run.get("diffusion_retrained_at"):
        model += (
            f" (the autoencoder trained by the run at commit "
            f"`{scdx_run.get('trained_at') or 'unknown'}` and loaded from its saved models, the "
            "diffusion trained again here from a fresh initialisation with the current "
            "defaults: training time = that run's autoencoder time + this diffusion time)"
        )
    elif scdx_run.get("loaded"):
        model += (
            f" (trained by the run at commit `{scdx_run.get('trained_at') or 'unknown'}` and "
            "loaded from its saved models here: training time and memory are that run's)"
        )
    protocol = payload.get("generation_protocol")
    symmetric = protocol in SYMMETRIC_PROTOCOLS
    features = ", ".join(f"{n:,} {DISPLAY[m]}" for m, n in payload["n_features"].items())
    rows = payload["results"]
    lines = [
        f"# {payload['dataset']}",
        "",
        f"Generated by `{payload['command']}` on {payload['date']} at commit "
        f"`{payload['commit']}` ({payload['hardware']}); raw results: "
        f"`{payload['results_file']}`.",
        "",
        f"{payload['n_train']:,} training and {payload['n_test']:,} held-out cells "
        f"(`np.random.default_rng(0).random(n_obs) < 0.2`), {features} features. Every model "
        f"was fitted on the same training cells in the same process. SCDX: {model}. "
        f"{peer}: {epochs} epochs, defaults. Controls: kNN regression (k = 15) and "
        "ridge regression on a 50-component embedding of the source (PCA of log1p CP10k; LSI "
        "for ATAC), and the training mean profile. Floor: the same kNN and ridge regressions "
        "on SCDX's own source latent (`scdx_scvi.metrics.latent_floor`); a translation below "
        "it does not use all that its source latent carries.",
        "",
        "## Cost",
        "",
        *([f"**Note.** {payload['cost_note']}", ""] if payload.get("cost_note") else []),
        _cost_table(payload),
        "",
        "## Translation of held-out cells",
        "",
        "Each test cell's source modality alone is translated. `SCDX` is the default "
        '(`sampler="mean"`, the denoiser\'s conditional-mean estimate, one evaluation); '
        f"`SCDX, one sample` draws one cell (DPM-Solver++, {sample_steps} steps). For RNA and "
        'protein `SCDX` gives the expected log1p value (`expected="log1p"`) and `SCDX, '
        'expected counts` the expected counts (`expected="counts"`). FOSCTTM and '
        "label accuracy are computed in a PCA of the training cells' target modality; the label "
        "accuracy of the measured target cells is "
        + ", ".join(
            f"{_fmt(r['label_accuracy_measured'])} ({_arrow(r['direction'])})"
            for r in rows
            if r["task"] == "translation" and r["model"] == SCDX and "label_accuracy_measured" in r
        )
        + ". FOSCTTM is not defined for a constant prediction (the mean profile), whose "
        "distances all tie. Best value per column in bold.",
        "",
    ]
    for direction in directions(payload):
        target = direction.split("->")[1]
        subset = [r for r in rows if r["task"] == "translation" and r["direction"] == direction]
        columns = TRANSLATION_COLUMNS["atac" if target == "atac" else "counts"]
        lines += [
            f"### {_arrow(direction)}",
            "",
            _table(subset, columns + TRANSLATION_COLUMNS["space"], ["cells/s", "peak MiB"]),
            "",
        ]
        name = f"per_feature_{direction.replace('->', '_to_')}.png"
        if name in rel:
            lines += [f"![per-feature scores, {_arrow(direction)}]({rel[name]})", ""]
    lines += [
        "## Generation",
        "",
        f"SCDX generates as many cells of each type as the test set has (DPM-Solver++, "
        f"{settings['generation_steps']} steps); {peer}'s posterior samples of the test cells "
        "(z ~ q(z | x), counts from its likelihoods) see the test cells themselves; "
        + (
            f"`{CEILING}` (each test cell encoded, decoded and drawn from SCDX's likelihoods, "
            "`SCDX.posterior_predictive_sample`) is the ceiling SCDX's decoder sets, what its "
            "generated cells would score with perfect latents; "
            if any(r["model"] == CEILING for r in rows)
            else ""
        )
        + f"`{REFERENCE}` (real cells with the test set's composition) is the **real-vs-real "
        "floor**, what a perfect generator would score. "
        + (
            "Each set is compared with the held-out cells under one protocol "
            "(`scdx_scvi.metrics.generation_score_set`): equal sizes, one embedding fitted on "
            f"both sets together (PCA of log1p CP10k, LSI for ATAC; {settings['n_comps']} "
            "components), a random forest scored by 5-fold cross-validation, the mean over "
            f"{settings.get('generation_seeds', 10)} draws. RF AUC: 0.5 is ideal. "
            + (
                "The peer's samples and the reconstruction draws are drawn cell by cell from the "
                "test cells: the classifier keeps each cell and its draw in one fold."
                if protocol == GROUPED
                else "**Pairs split**: the peer's samples and the reconstruction draws are drawn "
                "cell by cell from the test cells, and this run's folds split such pairs, which "
                "lowers their AUC (below 0.5 for close copies); SCDX's cells and the floor are "
                "not paired and are unaffected."
            )
            if symmetric
            else "**Old protocol**: these generation numbers and figures come from a run whose "
            "PCA was fitted on the held-out cells only, which favours them: the real-vs-real "
            "AUC is above 0.5. They are kept until the data set is run again."
        ),
        "",
    ]
    for m in payload["n_features"]:
        subset = [r for r in rows if r["task"] == "generation" and r["modality"] == m]
        lines += [
            f"### {DISPLAY[m]}",
            "",
            _table(subset, GENERATION_COLUMNS, ["cells/s", "peak MiB"]),
            "",
        ]
        diagnostics = _diagnostics_table(subset)
        if diagnostics:
            lines += [
                "Profile diagnostics (`scdx_scvi.metrics.profile_diagnostics`) on raw counts "
                "(ATAC binarised: the library size is the number of open peaks); ratios are "
                "set / held-out cells. A gap that the autoencoder's reconstructions share comes "
                "from the decoder and its likelihood, one they do not from the diffusion.",
                "",
                diagnostics,
                "",
            ]
        if f"umap_{m}.png" in rel:
            old = "" if symmetric else " (old protocol)"
            lines += [
                f"![UMAP of real and generated {DISPLAY[m]}{old}]({rel[f'umap_{m}.png']})",
                "",
            ]
    losses = _losses(payload)
    lines += ["## Where SCDX loses", ""]
    lines += [f"- {loss}" for loss in losses] or ["SCDX is best or tied on every metric."]
    path.write_text("\n".join(lines) + "\n")
    return path
