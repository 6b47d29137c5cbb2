"""RNA observation models other than the package's negative binomial, measured in stage 1.

The package scores RNA with one negative binomial per gene: a decoded mean and one fitted
dispersion per gene (:class:`scdx_scvi.module.CountLikelihood`). Two alternatives scVI offers
are defined here and measured, not package options, because neither was better:

* ``zinb``: a zero-inflated negative binomial, the decoder giving a second logit per gene, the
  probability of an extra zero (scVI's ``gene_likelihood="zinb"``);
* ``gene-cell``: the negative binomial with a dispersion per gene and cell, the decoder giving
  a second output per gene added to the gene's log-dispersion (scVI's
  ``dispersion="gene-cell"``).

``--variant`` installs one of them (or ``nb``, the package's) in place of the RNA likelihood of
``SCDX(mdata)``; every argument after ``--`` goes to ``--script``, whose scores are those of
that script (``autoencoder_dropout``: stage 1 alone, held-out reconstruction, the cross-modal
floors and the realism of reconstruction draws).

Usage::

    python benchmarks/rna_likelihood.py --variant zinb --script autoencoder_dropout -- \
        --dataset eccite_citefuse --dropout-rate 0 --protein-likelihood nb_mixture \
        --out benchmarks/results/stage1_options/rna_likelihood_zinb_eccite_citefuse.json
"""

from __future__ import annotations

import argparse
import importlib
import sys

import _common
import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

from scdx_scvi.module import _likelihoods
from scdx_scvi.module import _scdx_module as scdx_module


class _TwoOutputs(_likelihoods.CountLikelihood):
    """A count likelihood whose decoder gives the mean logits and one more output per gene."""

    outputs_per_feature = 2

    def _mean(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.chunk(2, dim=-1)[0]

    def normalized(self, logits, library_size, overwrite=False):
        return torch.softmax(self._mean(logits), dim=-1) * library_size

    def log_normalized(self, logits):
        return F.log_softmax(self._mean(logits), dim=-1)


class ZeroInflatedCountLikelihood(_TwoOutputs):
    """Zero-inflated negative binomial: the second output is the logit of an extra zero."""

    def distribution(self, logits, library):
        mean, zero = logits.chunk(2, dim=-1)
        scale = torch.softmax(mean, dim=-1)
        return ZeroInflatedNegativeBinomial(
            mu=scale * library,
            theta=self.log_theta.exp(),
            zi_logits=zero,
            scale=scale,
            validate_args=False,
        )

    def components(self, logits, library):
        mean, zero = logits.chunk(2, dim=-1)
        return [(torch.sigmoid(-zero), torch.softmax(mean, dim=-1) * library)]


class GeneCellCountLikelihood(_TwoOutputs):
    """Negative binomial whose log-dispersion is the gene's plus a decoded per-cell offset."""

    def theta(self, logits: torch.Tensor) -> torch.Tensor:
        return (self.log_theta + logits.chunk(2, dim=-1)[1]).clamp(-12.0, 12.0).exp()

    def distribution(self, logits, library):
        scale = torch.softmax(self._mean(logits), dim=-1)
        return NegativeBinomial(
            mu=scale * library, theta=self.theta(logits), scale=scale, validate_args=False
        )

    def components(self, logits, library):
        return [(1.0, torch.softmax(self._mean(logits), dim=-1) * library)]

    def expected_log1p(self, logits, library, library_size):
        mu = self.components(logits, library)[0][1]
        scale = library_size / torch.as_tensor(library, dtype=mu.dtype, device=mu.device)
        scale = scale.reshape(-1, 1).expand(mu.shape[0], 1)
        return _likelihoods._nb_expected_log1p(mu, self.theta(logits), scale)


VARIANTS = {
    "nb": None,
    "zinb": ZeroInflatedCountLikelihood,
    "gene-cell": GeneCellCountLikelihood,
}


def install(variant: str) -> None:
    """Make the RNA likelihood of every model built afterwards ``variant``'s."""
    cls = VARIANTS[variant]
    if cls is None:
        return
    package_class, package_make = scdx_module.likelihood_class, scdx_module.make_likelihood

    def likelihood_class(modality, protein_likelihood="nb"):
        return cls if modality == "rna" else package_class(modality, protein_likelihood)

    def make_likelihood(modality, n_features, encoder_input, protein_likelihood="nb"):
        if modality == "rna":
            return cls(n_features, encoder_input=encoder_input)
        return package_make(modality, n_features, encoder_input, protein_likelihood)

    scdx_module.likelihood_class, scdx_module.make_likelihood = likelihood_class, make_likelihood


def main() -> None:
    argv = sys.argv[1:]
    split_at = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=list(VARIANTS), required=True)
    parser.add_argument("--script", choices=["autoencoder_dropout", "count_draws"], required=True)
    args = parser.parse_args(argv[:split_at])
    install(args.variant)
    script = importlib.import_module(args.script)
    # the result file names this command and the variant, not the script's own command line
    script_provenance = _common.provenance
    _common.provenance = lambda name: {
        **script_provenance(name),
        "command": "python benchmarks/rna_likelihood.py " + " ".join(argv),
        "rna_likelihood": args.variant,
    }
    sys.argv = [f"{args.script}.py", *argv[split_at + 1 :]]
    script.main()


if __name__ == "__main__":
    main()
