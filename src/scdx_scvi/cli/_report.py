"""The demo's ``report.md``: what was run, the scores against the controls, the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scdx_scvi.metrics import REFERENCE_NAME
from scdx_scvi.metrics._tasks import KNN_NAME, KNN_NEIGHBOURS, MEAN_NAME, RIDGE_NAME, TEST_SHARE

from ._inputs import DISPLAY as _DISPLAY
from ._tables import (
    GENERATION_HEADER,
    GENERATION_METRICS,
    SCDX_NAME,
    TIE,
    TRANSLATION_HEADER,
    TRANSLATION_METRICS,
    _fmt,
    generation_rows,
    markdown_table,
    translation_rows,
)


def _package_defaults() -> str:
    """Describe the training defaults of :class:`~scdx_scvi.SCDX` (its ``"scdx"`` configuration)."""
    from scdx_scvi.module import MODEL_CONFIGURATIONS, TRAIN_CONFIGURATIONS

    train = TRAIN_CONFIGURATIONS["scdx"]
    epochs = (
        f"up to {train['max_epochs']} epochs"
        if train["max_epochs"]
        else "25 to 300 epochs (by the number of cells)"
    )
    return (
        f"{epochs} and up to {train['max_steps_diffusion']:,} diffusion steps, a U-Net of width "
        f"{MODEL_CONFIGURATIONS['scdx']['n_channels']}"
    )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _versus(value: float, other: float) -> str:
    if value > other + TIE:
        return "above"
    if value < other - TIE:
        return "below"
    return "about equal to"


def translation_reading(translation: dict[str, Any]) -> list[str]:
    """Say in words, per direction, how SCDX compares with the best learned control and the mean.

    Parameters
    ----------
    translation
        ``metrics["translation"]``.

    Returns
    -------
    One Markdown paragraph per direction.
    """
    lines = []
    for direction, entry in translation.items():
        scores = entry["scores"]
        (key, label, _, _), (key2, label2, _, _) = TRANSLATION_METRICS[entry["target"]]
        control = max((KNN_NAME, RIDGE_NAME), key=lambda name, key=key: scores[name][key])
        s, k, mp = (scores[name][key] for name in (SCDX_NAME, control, MEAN_NAME))
        source = _DISPLAY[entry["source"]]
        if s > k + TIE:
            text = (
                f"SCDX predicts the individual cells better than every control ({label} "
                f"{_fmt(s)}; {control} {_fmt(k)}, mean profile {_fmt(mp)})."
            )
        elif s > mp + TIE:
            how = "less well than" if k > s + TIE else "about as well as"
            text = (
                f"SCDX uses each cell's measured {source} ({label} {_fmt(s)}, above the mean "
                f"profile's {_fmt(mp)}), {how} {control} ({_fmt(k)})."
            )
        else:
            text = (
                f"SCDX's predictions do not yet follow the individual cell: its {label} "
                f"({_fmt(s)}) is at the level of the mean profile ({_fmt(mp)}), which ignores "
                "the cell"
            )
            text += (
                f", while {control} reaches {_fmt(k)}, so the {source} of these cells does "
                "carry the information."
                if k > mp + TIE
                else f", and so is {control} ({_fmt(k)}): the {source} of these cells "
                "carries little information about the target."
            )
        s2, k2, mp2 = (scores[name][key2] for name in (SCDX_NAME, control, MEAN_NAME))
        text += (
            f" {label2}: SCDX {_fmt(s2)} is {_versus(s2, k2)} {control} ({_fmt(k2)}) and "
            f"{_versus(s2, mp2)} the mean profile ({_fmt(mp2)})."
        )
        if key2 == "pearson_per_cell" and s2 < mp2 - TIE:
            text += (
                " Below the mean profile here means that the predicted profiles vary from cell to "
                "cell in ways that do not match the measured cells."
            )
        lines.append(f"- **{direction}**: {text}")
    return lines


def generation_reading(generation: dict[str, Any]) -> list[str]:
    """Say in words, per modality, how realistic the generated cells are.

    Parameters
    ----------
    generation
        ``metrics["generation"]``.

    Returns
    -------
    One Markdown line per modality.
    """
    lines = []
    for m, sets in generation.items():
        gen, ref = sets[SCDX_NAME], sets[REFERENCE_NAME]
        auc, auc_ref = gen["classifier_auc"], ref["classifier_auc"]
        if auc <= auc_ref + 0.05:
            verdict = "by this measure they are as realistic as real cells"
        elif auc < 0.9:
            verdict = "they resemble real cells but can still be told apart"
        else:
            verdict = "they are still easy to tell apart from real cells"
        lines.append(
            f"- **{_DISPLAY[m]}**: a classifier tells generated from real held-out cells with "
            f"AUC {_fmt(auc)} (real vs real: {_fmt(auc_ref)}; 0.5 means indistinguishable), "
            f"and they mix with real cells at {_fmt(gen['mixing'])} (real vs real: "
            f"{_fmt(ref['mixing'])}): {verdict}."
        )
    return lines


def _summary_section(metrics: dict[str, Any]) -> list[str]:
    return [
        "## Results at a glance",
        "",
        "Translation of held-out cells (scores below; differences under "
        f"{TIE} are counted as ties):",
        "",
        *translation_reading(metrics["translation"]),
        "",
        "Generation of new cells:",
        "",
        *generation_reading(metrics["generation"]),
        "",
    ]


def _data_section(metrics: dict[str, Any]) -> list[str]:
    data, training = metrics["data"], metrics["training"]
    settings = metrics["settings"]
    features = ", ".join(
        f"{_DISPLAY[m]} {n:,} {'peaks' if m == 'atac' else 'features'}"
        for m, n in data["features"].items()
    )
    labels = (
        f"{data['n_cell_types']} cell types in `obs[{data['labels_key']!r}]`; generation is "
        "conditioned on them"
        if data["labels_key"]
        else "no cell-type labels; generation is unconditional"
    )
    early = " (stopped early: the validation loss had stopped improving)"
    ae_early = early if training["autoencoder_epochs"] < training["autoencoder_max_epochs"] else ""
    steps = training["diffusion_steps"]
    diff_early = early if steps < training["diffusion_max_steps"] else ""
    lines = [
        "## What was run",
        "",
        f"- **Data**: {data['description']}. {data['n_cells']:,} cells measured in "
        f"{len(data['features'])} modalities ({features}); {labels}.",
        f"- **Split**: {data['n_held_out']:,} cells ({TEST_SHARE:.0%}, drawn at random with seed "
        f"{settings['seed']}) were held out and never seen in training; the model and the "
        f"controls were fitted on the other {data['n_train']:,} cells.",
        f"- **Model**: SCDX with the `{training['architecture']}` autoencoder and a diffusion "
        f"U-Net of base width {training['n_channels']}; "
        + (
            "the package defaults (`SCDX(mdata)` and `model.train()`)."
            if training.get("package_defaults")
            else "every other option is the package default."
        ),
        f"- **Training**: autoencoder {training['autoencoder_epochs']} epochs "
        f"(at most {training['autoencoder_max_epochs']}){ae_early}; latent diffusion "
        f"{steps:,} optimiser "
        f"steps in {training['diffusion_epochs']} passes over the cells (at most "
        f"{training['diffusion_max_steps']:,} steps){diff_early}; on "
        f"`{training['device']}`.",
        f"- **Generation**: {metrics['generation_cells']:,} new cells"
        + (" with the held-out cell-type composition" if data["labels_key"] else "")
        + f", sampled with {metrics['generation_sampler']}.",
        "- **Translation**: the held-out cells were given to the model as an AnnData holding only "
        "the source modality (no cell type), and the target modality was predicted (the "
        "default: the denoiser's conditional-mean estimate, one evaluation per cell).",
        "",
        "Timings (wall clock):",
        "",
        "| step | time |",
        "|---|---:|",
        *(f"| {step} | {_minutes(sec)} |" for step, sec in metrics["timings_seconds"].items()),
        f"| **total** | **{_minutes(sum(metrics['timings_seconds'].values()))}** |",
        "",
    ]
    return lines


def _translation_section(metrics: dict[str, Any], figures: dict[str, str]) -> list[str]:
    translation = metrics["translation"]
    lines = [
        "## Cross-modality translation of held-out cells",
        "",
        "SCDX predicted one modality from the other for the held-out cells, and the prediction is "
        "compared with what was actually measured in those cells. Three controls, fitted on the "
        "same training cells, show what simple methods reach:",
        "",
        f"- **{KNN_NAME}**: for each held-out cell, the {KNN_NEIGHBOURS} training cells with the "
        "most similar source profile (in a 50-component PCA of log1p counts per 10k for RNA or "
        "protein, LSI of the accessibility for ATAC), and the average of their target profiles;",
        f"- **{RIDGE_NAME}**: a linear model, a ridge regression of the target on that same "
        "embedding of the source;",
        f"- **{MEAN_NAME}**: the average training profile of the target, the same for every cell "
        "(it knows nothing about the individual cell).",
        "",
        markdown_table(TRANSLATION_HEADER, translation_rows(translation)),
        "",
    ]
    for direction, entry in translation.items():
        if entry["target"] == "atac":
            lines.append(
                f"{direction}: {entry['peaks_scored']:,} peaks were open in some but not all "
                f"held-out cells and were scored; the AUPRC of a random guess is "
                f"{_fmt(entry['chance']['auprc_per_peak'])} (the average share of cells in which a "
                "scored "
                "peak is open)."
            )
            lines.append("")
    lines += ["What the metrics mean:", ""]
    seen = set()
    for entry in translation.values():
        for _, label, _, meaning in TRANSLATION_METRICS[entry["target"]]:
            if (label, meaning) not in seen:
                seen.add((label, meaning))
                lines.append(f"- **{label}** ({_DISPLAY[entry['target']]}): {meaning}")
    lines.append("")
    if "feature_scatter" in figures:
        lines += [
            f"![Per-gene Pearson, SCDX vs kNN regression]({figures['feature_scatter']})",
            "",
            "Each dot is a gene: its Pearson correlation between predicted and measured "
            "expression across the held-out cells, for SCDX (vertical) and for the kNN control "
            "(horizontal). Dots above the dashed line are genes that SCDX predicts better.",
            "",
        ]
    return lines


def _generation_section(metrics: dict[str, Any], figures: dict[str, str]) -> list[str]:
    generation = metrics["generation"]
    n_scored = next(iter(generation.values()))[SCDX_NAME]["n_real"]
    lines = [
        "## Generation of new cells",
        "",
        f"SCDX generated {metrics['generation_cells']:,} new paired cells. They are compared "
        "with the held-out real cells, both sets treated alike: equal sizes "
        f"({n_scored:,} cells each), one embedding fitted on the two sets together (PCA of "
        "log1p counts per 10k; LSI for ATAC), and a classifier scored only on cells it did not "
        f"see (5-fold cross-validation), averaged over {metrics['generation_seeds']} random "
        "draws. The **real-vs-real floor** column scores, in the same way, real training cells "
        f"({REFERENCE_NAME}) with the held-out cell-type composition instead of generated cells: "
        "two real samples are not identical either, so this is what a perfect generator would "
        "score here (AUC about 0.5).",
        "",
        markdown_table(GENERATION_HEADER, generation_rows(generation)),
        "",
        "What the metrics mean:",
        "",
        *(f"- **{label}**: {meaning}" for _, label, _, meaning in GENERATION_METRICS),
        "",
    ]
    for m in generation:
        key = f"umap_{m}"
        if key in figures:
            lines += [f"![UMAP of {_DISPLAY[m]}]({figures[key]})", ""]
    if any(k.startswith("umap_") for k in figures):
        lines += [
            "In each UMAP (of the embedding above), real held-out and generated cells are "
            "drawn together: generated cells that fall among real cells of their own cell type, "
            "rather than in clouds of their own, are realistic.",
            "",
        ]
    return lines


def _files_section(metrics: dict[str, Any]) -> list[str]:
    descriptions = {
        "model/": "the trained model (`scdx_scvi.SCDX.load(...)`, or `scdx generate` / "
        "`scdx translate` on the command line)",
        "generated.h5mu": "the generated cells: counts per modality (ATAC as 0/1) with the "
        "training features, and their cell type in `obs`",
        "metrics.json": "every number of this report, and the settings",
        "report.md": "this report",
    }
    lines = ["## Files", ""]
    for name in metrics["files"]:
        if name in metrics["translation_files"]:
            direction = metrics["translation_files"][name]
            target = metrics["translation"][direction]["target"]
            values = "accessibility probabilities" if target == "atac" else "values per 10k counts"
            what = (
                f"the {direction} translation of the held-out cells: {values}, the training "
                "features as `var`"
            )
        elif name.startswith("figures/umap_"):
            what = "UMAP of real held-out and generated cells"
        elif name.startswith("figures/"):
            what = "per-gene Pearson of SCDX against the kNN control"
        else:
            what = descriptions.get(name, "")
        lines.append(f"- `{name}`: {what}" if what else f"- `{name}`")
    lines += [
        "",
        "Next steps with the saved model:",
        "",
        "```bash",
        f"scdx generate {metrics['out']}/model --n-cells 500 --out more_cells.h5mu",
        f"scdx translate {metrics['out']}/model rna_only.h5ad --source rna --target "
        f"{'atac' if 'atac' in metrics['data']['features'] else 'protein'} --out predicted.h5ad",
        "```",
        "",
    ]
    return lines


def _caveats_section(metrics: dict[str, Any]) -> list[str]:
    lines = [
        "## Keep in mind",
        "",
        (
            "- SCDX was trained with the package defaults "
            f"({_package_defaults()}), as `scdx train` and `SCDX(mdata)` do; a GPU makes it "
            "faster, not better."
            if metrics["training"].get("package_defaults")
            else "- SCDX was trained with a smaller budget or size than the package defaults "
            f"({_package_defaults()}): the run shows the workflow, not the model of record."
        ),
        f"- Where SCDX does not beat {KNN_NAME} on a metric, a plain average over similar "
        "training cells does as well for that task in this run.",
        "- Translation was run as for new, unannotated cells: the model saw only the source "
        "modality, not the cell type.",
    ]
    if metrics["data"]["simulated"]:
        lines.append(
            "- The data are simulated (negative binomial RNA, mostly 0/1 ATAC, cell types with "
            "their own programs, planted gene-peak links): the scores show how the workflow runs "
            "and how to read it, not how SCDX will do on a given tissue. Run `scdx demo --data "
            "your.h5mu` on paired real data to find out."
        )
    return [*lines, ""]


def write_report(path: Path, metrics: dict[str, Any], figures: dict[str, str]) -> Path:
    """Write the Markdown report: what was run, the scores against the controls, the figures.

    Parameters
    ----------
    path
        The ``report.md`` to write.
    metrics
        Everything :func:`run_demo` measured (the content of ``metrics.json``).
    figures
        ``{figure name: path relative to the report}``.

    Returns
    -------
    ``path``.
    """
    lines = [
        "# SCDX demo report",
        "",
        "SCDX learns paired single-cell modalities (RNA with ATAC or surface protein) jointly: "
        "an autoencoder compresses each modality of a cell into a short latent vector, and a "
        "diffusion model learns how those vectors go together. It can then **generate** new "
        "paired cells of a chosen cell type and **translate** a cell measured in one modality "
        "into another (for example predict chromatin accessibility from RNA).",
        "",
        f"Created {metrics['created']} with scdx-scvi {metrics['version']} "
        f"(`{metrics['command']}`), on {metrics['machine']}.",
        "",
        *_summary_section(metrics),
        *_data_section(metrics),
        *_translation_section(metrics, figures),
        *_generation_section(metrics, figures),
        *_files_section(metrics),
        *_caveats_section(metrics),
    ]
    path.write_text("\n".join(lines))
    return path
