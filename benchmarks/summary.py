"""The benchmark of record across data sets: one summary on ``docs/benchmarks.md``.

Reads every ``benchmarks/results/benchmark_<dataset>.json`` written by ``run.py``, re-renders
each data set's page ``docs/benchmarks/<dataset>.md`` from its JSON (the figures of the run are
kept) and rewrites the block between the two ``summary`` markers of ``docs/benchmarks.md``:
the headline translation metric of every direction, generation MMD and classifier AUC, and the
cost ratios to the peer, one row per data set. ``run.py`` calls it after each run; run it by
hand after a change to the page layout, which then needs no new training.

Usage::

    python benchmarks/summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

from _common import RESULTS
from _report import (
    DISPLAY,
    GROUPED,
    SCDX,
    SYMMETRIC_PROTOCOLS,
    _arrow,
    _fmt,
    _ratio,
    bold_best,
    directions,
    find_row,
    write_page,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MAIN_PAGE = DOCS / "benchmarks.md"
BEGIN, END = "<!-- summary: begin (benchmarks/summary.py) -->", "<!-- summary: end -->"
#: Data sets in the order of the summary: the main benchmark first.
ORDER = ["snareseq_mop"]
CONTROLS = ["kNN regression", "ridge regression", "mean profile"]
#: The floor of SCDX's own source latent (``scdx_scvi.metrics.latent_floor``).
FLOORS = ["kNN on own source latent", "ridge on own source latent"]


def load_payloads(folder: Path = RESULTS) -> list[dict]:
    """The results of every ``run.py`` run in ``folder``, the main benchmark first."""
    payloads = [json.loads(p.read_text()) for p in sorted(folder.glob("benchmark_*.json"))]
    return sorted(payloads, key=lambda p: (p["dataset"] not in ORDER, p["dataset"]))


def _headline(direction: str) -> tuple[str, str]:
    """The metric that a direction is judged by, and its title."""
    target = direction.split("->")[1]
    if target == "atac":
        return "auroc_per_peak", "per-peak AUROC"
    return "pearson_per_feature", f"per-{'gene' if target == 'rna' else 'protein'} Pearson"


def translation_table(payloads: list[dict]) -> str:
    lines = [
        "| data set | direction | metric | SCDX | SCDX, one sample | peer | kNN regression "
        "| ridge regression | mean profile | floor: kNN / ridge on SCDX's source latent |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in payloads:
        for direction in directions(p):
            key, title = _headline(direction)
            models = [SCDX, f"{SCDX}, one sample", p["peer"], *CONTROLS]
            values = [find_row(p, "translation", m, direction=direction).get(key) for m in models]
            cells = bold_best(values)
            floor = [find_row(p, "translation", m, direction=direction).get(key) for m in FLOORS]
            lines.append(
                f"| {p['dataset']} | {_arrow(direction)} | {title} | "
                + " | ".join(cells[:2])
                + f" | {cells[2]} ({p['peer']}) | "
                + " | ".join(cells[3:])
                + f" | {_fmt(floor[0])} / {_fmt(floor[1])} |"
            )
    return "\n".join(lines)


def generation_table(payloads: list[dict]) -> str:
    lines = [
        "| data set | modality | MMD: SCDX | peer | real-vs-real floor | RF AUC: SCDX | peer "
        "| real-vs-real floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in payloads:
        samples = f"{p['peer']} posterior samples"
        for m in p["n_features"]:
            names = (SCDX, samples, "real training cells")
            rows = [find_row(p, "generation", n, modality=m) for n in names]
            mmd = [r.get("mmd_rbf") for r in rows]
            auc = [r.get("classifier_auc") for r in rows]
            mmd_cells, auc_cells = bold_best(mmd[:2], "low"), bold_best(auc[:2], "half")
            protocol, old = p.get("generation_protocol"), ""
            if protocol not in SYMMETRIC_PROTOCOLS:
                old = " (old protocol)"
            elif protocol != GROUPED:
                old = " (pairs split)"
            lines.append(
                f"| {p['dataset']}{old} | {DISPLAY[m]} | "
                f"{' | '.join(mmd_cells)} ({p['peer']}) | {_fmt(mmd[2])} | "
                f"{' | '.join(auc_cells)} ({p['peer']}) | {_fmt(auc[2])} |"
            )
    return "\n".join(lines)


def cost_table(payloads: list[dict]) -> str:
    lines = [
        "| data set | training time (s): SCDX / peer | ratio | translation cells/s ratio "
        "(each direction) | generation cells/s ratio | training peak memory ratio |",
        "|---|---|---|---|---|---|",
    ]
    for p in payloads:
        training = {r["model"]: r for r in p["training"]}
        scdx, peer = training[SCDX], training[p["peer"]]
        ratios = []
        for direction in directions(p):
            a = find_row(p, "translation", SCDX, direction=direction)
            b = find_row(p, "translation", p["peer"], direction=direction)
            comparable = b and not b.get("includes_training")
            ratio = _ratio(a["cells_per_second"], b["cells_per_second"]) if comparable else "—"
            ratios.append(f"{_arrow(direction)} {ratio}")
        first = next(iter(p["n_features"]))
        gen = _ratio(
            find_row(p, "generation", SCDX, modality=first).get("cells_per_second"),
            find_row(p, "generation", f"{p['peer']} posterior samples", modality=first).get(
                "cells_per_second"
            ),
        )
        lines.append(
            f"| {p['dataset']}{' (†)' if p.get('cost_note') else ''} | "
            f"{_fmt(scdx['seconds'], 0)} / {_fmt(peer['seconds'], 0)} "
            f"({p['peer']}) | {_ratio(scdx['seconds'], peer['seconds'])} | {'; '.join(ratios)} "
            f"| {gen} | {_ratio(scdx['peak_mib'], peer['peak_mib'])} |"
        )
    if any(p.get("cost_note") for p in payloads):
        lines += ["", "(†) Not comparable: see the note in the cost section of the page."]
    return "\n".join(lines)


def summary(payloads: list[dict]) -> str:
    """The Markdown block between the markers of ``docs/benchmarks.md``."""
    runs = ", ".join(
        f"[{p['dataset']}](benchmarks/{p['dataset']}.md) ({p['n_train']:,} / {p['n_test']:,} "
        f"cells, commit `{p['commit']}`)"
        for p in payloads
    )
    return "\n".join(
        [
            BEGIN,
            "",
            f"Runs: {runs}. Each page has every metric, the figures and the command.",
            "",
            "**Translation of held-out cells**, each from its source modality alone. `SCDX` is "
            'the default (`sampler="mean"`), `SCDX, one sample` one drawn cell; the largest value '
            "of each row is in bold (controls included). Per-feature Pearson is on log1p CP10k; "
            "per-peak AUROC is 0.5 for a constant prediction. totalVI has no protein → RNA path. "
            "The last column is the floor of SCDX's own source latent (kNN and ridge regression "
            "from it, not bolded): a translation below it does not use all that its latent "
            "carries (— for runs made before the floor was recorded).",
            "",
            translation_table(payloads),
            "",
            "**Generation** of as many cells per type as the test set has, against the held-out "
            "cells, both sets treated alike (equal sizes, one embedding fitted on both, a "
            "cross-validated classifier; `scdx_scvi.metrics.generation_score_set`). Lower MMD is "
            "better, RF AUC is best at 0.5; the better of SCDX and the peer's posterior samples "
            "of the test cells is in bold; the real-vs-real floor (real training cells of the "
            "same composition) is what a perfect generator scores. Runs marked *old protocol* "
            "fitted the PCA on the held-out cells, which favours them; runs marked *pairs split* "
            "let the classifier's folds separate a held-out cell from the peer's posterior "
            "sample of it, which lowers the peer's AUC (SCDX's cells and the floor are "
            "unpaired).",
            "",
            generation_table(payloads),
            "",
            "**Cost**, as ratios SCDX / peer measured in the same process: training time and "
            "peak memory (above 1: SCDX needs more), throughput in cells/s (above 1: SCDX is "
            "faster; the median of three timed calls where a run's JSON records "
            "`timing_repeats`, else one call, with SCDX and the peer taking turns where it "
            "records `timing_in_turns`). The peer's generation is posterior sampling of "
            "the test cells (one encoder and decoder pass), SCDX's runs DPM-Solver++ from noise "
            "(its steps are on each data set's page). totalVI's RNA → protein retrains on the "
            "query cells, so it has no comparable throughput.",
            "",
            cost_table(payloads),
            "",
            END,
        ]
    )


def rerender_page(payload: dict, docs: Path = DOCS / "benchmarks") -> Path:
    """Write a data set's page again from its JSON, with the figures its run drew."""
    figures = sorted((docs / payload["dataset"]).glob("*.png"))
    return write_page(payload, figures, docs / f"{payload['dataset']}.md")


def update(
    folder: Path = RESULTS, page: Path = MAIN_PAGE, pages: Path = DOCS / "benchmarks"
) -> None:
    """Re-render the page of every run in ``folder`` (in ``pages``) and the summary in ``page``."""
    payloads = load_payloads(folder)
    for payload in payloads:
        rerender_page(payload, pages)
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page} has no summary markers ({BEGIN} ... {END}).")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(head + summary(payloads) + tail)
    print(f"wrote the summary of {len(payloads)} runs in {page}")


if __name__ == "__main__":
    update()
