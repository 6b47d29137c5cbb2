from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED_DATA

from scdx_scvi.data import (
    DEFAULT_WINDOW,
    candidate_pairs,
    gene_tss,
    parse_regions,
    peak_coordinates,
    read_tss_bed,
)


@pytest.mark.parametrize("name", ["chr1_100_200", "chr1:100-200", "chr1-100-200"])
def test_parse_regions_three_styles(name):
    out = parse_regions([name, "chrX_5_10"])
    assert out.loc[name].tolist() == ["chr1", 100, 200]
    assert out.loc["chrX_5_10"].tolist() == ["chrX", 5, 10]
    assert out["start"].dtype == np.int64


def test_parse_regions_chromosome_with_underscore():
    out = parse_regions(["chrUn_GL000220v1_105_300"])
    assert out.iloc[0].tolist() == ["chrUn_GL000220v1", 105, 300]


@pytest.mark.parametrize("bad", ["gene_1", "chr1:200", "chr1:100-2x"])
def test_parse_regions_rejects(bad):
    with pytest.raises(ValueError, match="'chrom', 'start', 'end'"):
        parse_regions(["chr1_1_2", bad])
    with pytest.raises(ValueError, match="end before they start"):
        parse_regions(["chr1:300-200"])


def test_peak_coordinates_prefers_var_columns():
    var = pd.DataFrame(
        {"chrom": ["chr2", "chr3"], "start": [10, 20], "end": [30, 40]}, index=["p0", "p1"]
    )
    out = peak_coordinates(var)
    assert out.loc["p1"].tolist() == ["chr3", 20, 40]
    # without the columns the names are parsed
    named = peak_coordinates(pd.DataFrame(index=["chr1:5-15"]))
    assert named.iloc[0].tolist() == ["chr1", 5, 15]


def test_read_tss_bed(tmp_path):
    path = tmp_path / "genes.bed"
    path.write_text(
        "#chr\tstart\tend\tname\tscore\tstrand\n"
        "chr1\t1000\t1500\tA\t0\t+\n"
        "chr1\t5000\t9000\tB\t0\t-\n"
        "chr2\t100\t600\tA\t0\t+\n"
    )
    centre = read_tss_bed(path)
    assert centre.loc["A"].tolist() == ["chr1", 1250]  # first row of a duplicated gene
    assert centre.loc["B", "tss"] == 7000
    five = read_tss_bed(path, position="five_prime")
    assert five.loc["A", "tss"] == 1000 and five.loc["B", "tss"] == 9000
    plain = tmp_path / "plain.bed"
    plain.write_text("chr1\t10\t20\n")
    with pytest.raises(ValueError, match="four columns"):
        read_tss_bed(plain)


def test_gene_tss_sources(tmp_path):
    var = pd.DataFrame(
        {"chrom": ["chr1", "chr1"], "start": [100, 500], "end": [300, 900], "strand": ["+", "-"]},
        index=["A", "B"],
    )
    assert gene_tss(var)["tss"].tolist() == [100, 900]
    table = pd.DataFrame({"chrom": ["chr9"], "tss": [42]}, index=["B"])
    from_table = gene_tss(pd.DataFrame(index=["A", "B"]), table)
    assert from_table.index.tolist() == ["B"] and from_table.loc["B", "tss"] == 42
    with pytest.raises(ValueError, match="no coordinates"):
        gene_tss(pd.DataFrame(index=["A"]))
    with pytest.raises(ValueError, match="None of the genes"):
        gene_tss(pd.DataFrame(index=["Z"]), table)


def test_candidate_pairs_window():
    tss = pd.DataFrame({"chrom": ["chr1", "chr2"], "tss": [100_000, 50_000]}, index=["A", "B"])
    peaks = parse_regions(
        [
            "chr1_100_300",  # centre 200: 99,800 bp from A
            "chr1_149900_150100",  # centre 150,000: 50,000 bp from A
            "chr1_300000_300200",  # 200,100 bp from A: outside
            "chr2_50000_50010",  # centre 50,005: 5 bp from B
            "chr3_100000_100010",  # other chromosome
        ]
    )
    pairs = candidate_pairs(tss, peaks, window=100_000)
    assert pairs[["gene", "peak"]].values.tolist() == [
        ["A", "chr1_100_300"],
        ["A", "chr1_149900_150100"],
        ["B", "chr2_50000_50010"],
    ]
    assert pairs["distance"].tolist() == [99_800, 50_000, 5]
    assert len(candidate_pairs(tss, peaks, window=99_799)) == 2
    assert candidate_pairs(tss, peaks.iloc[4:], window=10**9).empty


def test_candidate_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    tss = pd.DataFrame(
        {"chrom": rng.choice(["chr1", "chr2"], 30), "tss": rng.integers(0, 10**6, 30)},
        index=[f"g{i}" for i in range(30)],
    )
    start = rng.integers(0, 10**6, 200)
    chrom = rng.choice(["chr1", "chr2"], 200)
    peaks = pd.DataFrame(
        {"chrom": chrom, "start": start, "end": start + 500},
        index=[f"{c}_{s}_{s + 500}" for c, s in zip(chrom, start, strict=True)],
    )
    pairs = candidate_pairs(tss, peaks, window=DEFAULT_WINDOW)
    centre = start + 250
    expected = {
        (g, p)
        for g, (c, t) in tss.iterrows()
        for p, pc, cc in zip(peaks.index, centre, chrom, strict=True)
        if cc == c and abs(pc - t) <= DEFAULT_WINDOW
    }
    assert set(zip(pairs["gene"], pairs["peak"], strict=True)) == expected


def test_shared_mm10_table_locates_snareseq_genes():
    path = SHARED_DATA / "annotations" / "mm10_gencode_vM25_tss500bp.bed"
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need ../shared/data beside the repository.")
    table = read_tss_bed(path)
    assert len(table) > 20_000
    assert table.loc["Xkr4"].tolist() == ["chr1", 3671498]
