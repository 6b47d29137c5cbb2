"""Per-modality observation models: what the encoder sees and how the decoder output is scored.

Each likelihood turns raw layer values into (1) the target it scores, (2) a per-cell library size
and (3) the encoder input, and turns decoder logits into a distribution over the target and into
normalised values (the quantity the ``get_normalized_*`` getters return). The distributions do
not check their arguments or the values they score (``validate_args=False``): ``setup_mudata``
has checked the data, and the check costs as much as the score itself at 10^5 peaks.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, NegativeBinomialMixture
from torch import nn
from torch.distributions import Bernoulli

EncoderInput = Literal["counts", "log1p"]
ProteinLikelihood = Literal["nb", "nb_mixture"]

#: Target library size of the ``"log1p"`` encoder input (log1p of counts per 10,000).
LOG1P_TARGET_SUM = 1e4
#: Counts summed exactly by :meth:`CountLikelihood.expected_log1p` (the rest enters as a tail).
LOG1P_TERMS = 16
#: Values per block of :meth:`CountLikelihood.expected_log1p` (its temporaries: 16 MiB each).
LOG1P_BLOCK = 2**22
#: Most values of the buffer of :meth:`BernoulliLikelihood.at_depth` (64 MiB): 256 rows, fewer
#: beyond 65,536 peaks.
DEPTH_BLOCK_VALUES = 2**24


class CountLikelihood(nn.Module):
    """Negative binomial on counts, mean ``softmax(logits) * library``, one dispersion per feature.

    Used for RNA (as in the reference) and for protein (ADT) counts.

    Parameters
    ----------
    n_features
        Number of features (genes or proteins).
    encoder_input
        ``"counts"``: the encoder sees raw counts (the reference behaviour).
        ``"log1p"``: the encoder sees ``log1p(counts / library * 1e4)``.
    """

    binary = False
    #: Decoder logits per feature.
    outputs_per_feature = 1

    def __init__(self, n_features: int, encoder_input: EncoderInput = "counts"):
        super().__init__()
        if encoder_input not in ("counts", "log1p"):
            raise ValueError(f"encoder_input must be 'counts' or 'log1p', got {encoder_input!r}.")
        self.encoder_input = encoder_input
        # Reference: theta = exp(param), param initialised from a standard normal.
        self.log_theta = nn.Parameter(torch.randn(n_features))

    def observed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the values the likelihood scores (the counts themselves)."""
        return x

    def library(self, x: torch.Tensor) -> torch.Tensor:
        """Return the observed total counts per cell, shape (cells, 1)."""
        return x.sum(dim=-1, keepdim=True)

    def encode_input(self, x: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
        """Return the encoder input for raw values ``x``."""
        if self.encoder_input == "counts":
            return x
        return torch.log1p(x / library.clamp(min=1.0) * LOG1P_TARGET_SUM)

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the scored target, the library and the encoder input of raw values ``x``."""
        library = self.library(x)
        return self.observed(x), library, self.encode_input(x, library)

    def nll(self, px: NegativeBinomial, target: torch.Tensor) -> torch.Tensor:
        """Return the negative log-likelihood of ``target`` (from :meth:`observed`) per cell."""
        return -px.log_prob(target).sum(dim=-1)

    def distribution(self, logits: torch.Tensor, library: torch.Tensor) -> NegativeBinomial:
        """Return the negative binomial for decoder ``logits`` and per-cell ``library``."""
        scale = torch.softmax(logits, dim=-1)
        return NegativeBinomial(
            mu=scale * library, theta=self.log_theta.exp(), scale=scale, validate_args=False
        )

    def normalized(
        self, logits: torch.Tensor, library_size: float | torch.Tensor, overwrite: bool = False
    ) -> torch.Tensor:
        """Return the expected counts at ``library_size`` (1 gives proportions).

        With ``overwrite`` (the caller's own logits, outside autograd) they replace the logits,
        so that no second block of cells x features is allocated.
        """
        if not overwrite:
            return torch.softmax(logits, dim=-1).mul_(library_size)
        logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()  # the softmax, step by step
        return logits.mul_(library_size / logits.sum(dim=-1, keepdim=True))

    def log_normalized(self, logits: torch.Tensor) -> torch.Tensor:
        """Return the log of the expected proportions (:meth:`normalized` at 1), differentiably."""
        return F.log_softmax(logits, dim=-1)

    def components(
        self, logits: torch.Tensor, library: float | torch.Tensor
    ) -> list[tuple[torch.Tensor | float, torch.Tensor]]:
        """Return the ``(weight, mean)`` of each negative binomial component at ``library``."""
        return [(1.0, torch.softmax(logits, dim=-1) * library)]

    def expected_log1p(
        self, logits: torch.Tensor, library: torch.Tensor, library_size: float
    ) -> torch.Tensor:
        """Return ``E[log1p(x * library_size / library)]``, ``x`` the NB counts at ``library``.

        The point estimate of a cell's values on the ``log1p`` scale that analyses use: for
        an overdispersed feature the ``log1p`` of the mean (:meth:`normalized`) lies far above
        it (at dispersion 0.5 by 0.9 at 30 expected counts and 1.2 at 3,000; at 0.05 by 2.6 and
        5.6). Exact for the
        counts below :data:`LOG1P_TERMS`; the rest of the distribution enters at its mean
        with a second-order correction for its spread, bounded below by its smallest value
        (error under 0.12 for dispersions of 0.5 or more, under 0.25 down to 0.05).

        Parameters
        ----------
        logits
            Decoder logits ``(cells, features)``.
        library
            Library size of each cell ``(cells, 1)`` (or a scalar).
        library_size
            Counts per cell of the normalised scale (1e4: counts per 10k).
        """
        parts = self.components(logits, library)
        first = parts[0][1]
        scale = library_size / torch.as_tensor(library, dtype=first.dtype, device=first.device)
        scale = scale.reshape(-1, 1).expand(first.shape[0], 1)
        theta = self.log_theta.exp()
        out = torch.zeros_like(first)
        rows = max(1, LOG1P_BLOCK // max(first.shape[1], 1))  # bounds the temporaries
        for weight, mu in parts:
            for start in range(0, mu.shape[0], rows):
                block = slice(start, start + rows)
                term = _nb_expected_log1p(mu[block], theta, scale[block])
                out[block] += term if isinstance(weight, float) else term.mul_(weight[block])
        return out


class CountMixtureLikelihood(CountLikelihood):
    """Mixture of a background and a foreground negative binomial per feature, as totalVI's.

    For protein (ADT) counts, where a cell's count of a protein it does not express is
    unspecific background and the counts of the proteins it expresses lie well above it. The
    decoder gives three logits per feature: the background proportions ``r`` (a softmax), the
    foreground's excess over the background ``f = 1 + softplus(.)`` and the probability ``w``
    of the background component (a sigmoid). With ``q = r (w + (1 - w) f)`` normalised to sum
    to 1, the component means are ``r / sum(q) * library`` and ``f`` times that, so that the
    expected counts are ``q / sum(q) * library``, as for :class:`CountLikelihood`. Both
    components share one dispersion per feature (totalVI's default).

    Parameters
    ----------
    n_features
        Number of features (proteins).
    encoder_input
        As for :class:`CountLikelihood`.
    """

    outputs_per_feature = 3

    def _parts(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return ``r / sum(q)``, ``f``, ``w``, ``q / sum(q)`` and the mixing logits."""
        back, excess, mixing = logits.chunk(3, dim=-1)
        r = torch.softmax(back, dim=-1)
        f = 1.0 + F.softplus(excess)
        w = torch.sigmoid(mixing)
        q = r * (w + (1.0 - w) * f)
        total = q.sum(dim=-1, keepdim=True)
        return r / total, f, w, q / total, mixing

    def distribution(self, logits: torch.Tensor, library: torch.Tensor) -> NegativeBinomialMixture:
        """Return the background/foreground mixture for decoder ``logits`` and ``library``."""
        r, f, _, _, mixing = self._parts(logits)
        back = r * library
        return _Mixture(
            mu1=back,
            mu2=back * f,
            theta1=self.log_theta.exp(),
            mixture_logits=mixing,
            validate_args=False,
        )

    def normalized(
        self, logits: torch.Tensor, library_size: float | torch.Tensor, overwrite: bool = False
    ) -> torch.Tensor:
        """Return the expected counts at ``library_size`` (1 gives proportions).

        ``overwrite`` is accepted for the caller's convenience; the result is a new tensor
        (a third of the logits' width).
        """
        return self._parts(logits)[3] * library_size

    def log_normalized(self, logits: torch.Tensor) -> torch.Tensor:
        """Return the log of the expected proportions, differentiably."""
        return torch.log(self.normalized(logits, 1.0))

    def components(
        self, logits: torch.Tensor, library: float | torch.Tensor
    ) -> list[tuple[torch.Tensor | float, torch.Tensor]]:
        """Return the background and foreground ``(weight, mean)`` at ``library``."""
        r, f, w, _, _ = self._parts(logits)
        back = r * library
        return [(w, back), (1.0 - w, back * f)]


def _nb_expected_log1p(mu: torch.Tensor, theta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``E[log1p(scale * x)]``, ``x ~ NB(mu, theta)`` (:meth:`CountLikelihood.expected_log1p`).

    The probabilities of ``x = 0 .. K - 1`` (``K`` = :data:`LOG1P_TERMS`) come from the
    recurrence ``p(k) = p(k - 1) q (k - 1 + theta) / k``, ``q = mu / (theta + mu)``, in place.
    The same recurrence gives the tail's first two moments in closed form from the head's mass
    and its last probability (``sum_{k >= K} k p(k) = mu (tail + (K - 1 + theta) p(K - 1) /
    theta)``, and the second moment likewise), so the loop sums only the mass and the head.
    """
    q = mu / (theta + mu)
    term = torch.exp(theta * torch.log1p(-q))  # p(0)
    mass, head = term.clone(), torch.zeros_like(mu)
    for k in range(1, LOG1P_TERMS):
        term.mul_((k - 1 + theta) / k).mul_(q)  # p(k)
        mass.add_(term)
        head.addcmul_(term, torch.log1p(scale * k))
    k = LOG1P_TERMS
    tail = (1.0 - mass).clamp_(min=0.0)
    last = term.mul_((k - 1 + theta) / theta)  # p(K - 1) (K - 1 + theta) / theta
    first = mu * (tail + last)  # sum over the tail of k p(k)
    second = (mu / theta) * ((1 + theta) * first + theta * tail + k * theta * last)
    safe = tail.clamp(min=1e-12)
    mean = (first / safe).clamp_(min=k)
    var = (second / safe - mean**2).clamp_(min=0.0)
    value = torch.log1p(scale * mean) - scale**2 * var / (2 * (1 + scale * mean) ** 2)
    return head + tail * torch.maximum(value, torch.log1p(scale * k))


class _Mixture(NegativeBinomialMixture):
    """scvi-tools' negative binomial mixture, each draw choosing its own component.

    scvi-tools 1.4 draws the component once per cell and feature and shares it between the
    ``sample_shape`` draws, so that several draws of a cell are not independent.
    """

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple | None = None) -> torch.Tensor:
        """Draw counts: a component per draw, then its negative binomial (gamma-Poisson)."""
        shape = torch.Size(sample_shape or ())
        background = torch.bernoulli(self.mixture_probs.expand(shape + self.mu1.shape))
        mu = torch.where(background.bool(), self.mu1, self.mu2)
        theta = self.theta1.expand_as(mu)
        rate = torch.distributions.Gamma(theta, theta / mu.clamp(min=1e-8)).sample()
        return torch.poisson(rate.clamp(max=1e8))


class BernoulliLikelihood(nn.Module):
    """Bernoulli on binarised values (``x > 0``), probability ``sigmoid(logits)``.

    Used for ATAC, as in the reference; counts are binarised on the fly, so a layer with raw
    fragment counts and a layer with 0/1 accessibility give the same model.
    """

    binary = True
    outputs_per_feature = 1

    def observed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the binarised accessibility."""
        return (x > 0).to(x.dtype)

    def encode_input(self, x: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
        """Return the binarised accessibility, the encoder input of the reference."""
        return self.observed(x)

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the scored target, the library and the encoder input of raw values ``x``.

        The target and the encoder input are one binarised tensor (one pass over a (cells, peaks)
        minibatch); the library is its number of open peaks per cell, shape (cells, 1). A
        ``torch.sparse_csr`` ``x`` gives sparse CSR ones (the encoder's first layer takes it as it
        is, see :class:`~scdx_scvi.nn.MLP`).
        """
        if x.layout != torch.sparse_csr:
            binary = self.observed(x)
            return binary, binary.sum(dim=-1, keepdim=True), binary
        crow, positive = x.crow_indices(), x.values() > 0
        counts = torch.cat([positive.new_zeros(1, dtype=torch.long), positive.long().cumsum(0)])
        library = (counts[crow[1:]] - counts[crow[:-1]]).to(x.dtype).unsqueeze(-1)
        binary = torch.sparse_csr_tensor(
            crow, x.col_indices(), positive.to(x.dtype), x.shape, check_invariants=False
        )  # the structure of x, which is valid
        return binary, library, binary

    def nll(
        self, px: Bernoulli, target: torch.Tensor, overwrite_logits: bool = False
    ) -> torch.Tensor:
        """Return the negative log-likelihood of the binarised ``target`` per cell.

        The binary cross-entropy on the logits, summed over peaks (:class:`_BinaryCrossEntropy`).
        With ``overwrite_logits`` (the training loss, whose logits nothing reads afterwards)
        the backward pass writes the gradient over ``px.logits``.
        """
        return _BinaryCrossEntropy.apply(px.logits, target, overwrite_logits)

    def distribution(self, logits: torch.Tensor, library: torch.Tensor | None = None) -> Bernoulli:
        """Return the Bernoulli for decoder ``logits`` (the library is not used)."""
        return Bernoulli(logits=logits, validate_args=False)

    @staticmethod
    @torch.no_grad()
    def at_depth(
        logits: torch.Tensor,
        depth: torch.Tensor,
        block: int | None = None,
        tolerance: float = 0.1,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shift each cell's ``logits`` by one offset so that ``depth`` peaks are open on average.

        The offset ``b`` of a cell solves ``sum_j sigmoid(logits_j + b) = depth`` (Newton's
        method; the sum grows with ``b``), so the decoder's relative accessibility of the peaks
        is kept and only the cell's number of open peaks changes. ``depth`` ``(cells, 1)`` is
        clamped to ``[1, peaks - 1]`` and met within ``tolerance`` peaks (a Bernoulli draw
        of ``d`` expected open peaks varies by about ``sqrt(d)``). Rows are processed ``block``
        at a time (default: 256, fewer beyond 65,536 peaks, so that the block's buffer holds at
        most :data:`DEPTH_BLOCK_VALUES`), so the temporaries stay small at hundreds of thousands
        of peaks. ``out`` (e.g. ``logits`` itself, to shift them in place) receives the shifted
        logits.
        """
        out = torch.empty_like(logits) if out is None else out
        if block is None:
            block = min(256, max(1, DEPTH_BLOCK_VALUES // max(logits.shape[-1], 1)))
        target = depth.reshape(-1, 1).to(logits.dtype).clamp(1.0, logits.shape[-1] - 1.0)
        buffer = torch.empty_like(logits[:block])  # reused: no allocation per iteration
        for start in range(0, logits.shape[0], block):
            rows, goal = logits[start : start + block], target[start : start + block]
            p = buffer[: len(rows)]
            offset = torch.zeros_like(goal)
            for _ in range(50):
                torch.add(rows, offset, out=p).sigmoid_()
                total = p.sum(dim=-1, keepdim=True)
                if bool(((total - goal).abs() < tolerance).all()):
                    break
                # Newton's method on log(total), close to linear in the offset when most
                # probabilities are small: d log(total) / d offset = sum p (1 - p) / total
                slope = 1.0 - torch.linalg.vecdot(p, p).unsqueeze(-1) / total
                step = (total.log() - goal.log()) / slope.clamp(min=1e-6)
                offset = offset - step.clamp(-4.0, 4.0)
            torch.add(rows, offset, out=out[start : start + block])
        return out

    def normalized(
        self,
        logits: torch.Tensor,
        library_size: float | torch.Tensor | None = None,
        overwrite: bool = False,
    ) -> torch.Tensor:
        """Return the accessibility probabilities.

        With ``overwrite`` (the caller's own logits, outside autograd) they replace the logits,
        so that no second block of cells x peaks is allocated.
        """
        return logits.sigmoid_() if overwrite else torch.sigmoid(logits)

    def log_normalized(self, logits: torch.Tensor) -> torch.Tensor:
        """Return the log accessibility probabilities, differentiably."""
        return F.logsigmoid(logits)


class _BinaryCrossEntropy(torch.autograd.Function):
    """Per-row sum of the binary cross-entropy of ``logits`` against 0/1 ``target``.

    ``softplus(logits) - logits * target``, the value of
    :func:`~torch.nn.functional.binary_cross_entropy_with_logits` summed over the last axis,
    with a gradient of ``sigmoid(logits) - target``: one (cells, peaks) temporary forward and
    one backward, where the built-in function makes several (at 10^5 peaks each is hundreds of
    megabytes per minibatch). With ``overwrite`` the gradient is written over the logits
    instead, so that the logits and their gradient are never held at once; a second backward
    pass through the same graph is then refused. Half-precision logits (mixed-precision
    training) are scored in float32, as autocast does for the built-in function.
    """

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, target: torch.Tensor, overwrite: bool = False
    ) -> torch.Tensor:
        ctx.logits_dtype = logits.dtype
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # 16-bit: upcast
        ctx.overwrite = overwrite
        if overwrite:  # not saved for backward: its version check would refuse the overwrite
            ctx.kept = (logits.detach(), target)
        else:
            ctx.save_for_backward(logits, target)
        out = F.softplus(logits).sum(-1)
        return out.sub_(torch.einsum("...j,...j->...", logits, target.to(logits.dtype)))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if not ctx.overwrite:
            logits, target = ctx.saved_tensors
            out = torch.sigmoid(logits)
        else:
            if ctx.kept is None:
                raise RuntimeError(
                    "The ATAC likelihood's logits were overwritten by their gradient in the "
                    "first backward pass; run the forward pass again for another one."
                )
            (logits, target), ctx.kept = ctx.kept, None
            out = logits.clone().sigmoid_() if torch.is_grad_enabled() else logits.sigmoid_()
        out = out.sub_(target).mul_(grad.unsqueeze(-1))
        return out.to(ctx.logits_dtype), None, None


def likelihood_class(modality: str, protein_likelihood: ProteinLikelihood = "nb") -> type:
    """Return the likelihood class of ``modality`` (``"rna"``, ``"atac"`` or ``"protein"``).

    ``protein_likelihood`` chooses protein's: ``"nb"`` (:class:`CountLikelihood`) or
    ``"nb_mixture"`` (:class:`CountMixtureLikelihood`).
    """
    if protein_likelihood not in ("nb", "nb_mixture"):
        raise ValueError(
            f"protein_likelihood must be 'nb' or 'nb_mixture', got {protein_likelihood!r}."
        )
    if modality == "atac":
        return BernoulliLikelihood
    if modality == "protein" and protein_likelihood == "nb_mixture":
        return CountMixtureLikelihood
    if modality in ("rna", "protein"):
        return CountLikelihood
    raise ValueError(f"Unknown modality {modality!r}; expected 'rna', 'atac' or 'protein'.")


def make_likelihood(
    modality: str,
    n_features: int,
    encoder_input: EncoderInput,
    protein_likelihood: ProteinLikelihood = "nb",
) -> nn.Module:
    """Return the likelihood of ``modality`` (see :func:`likelihood_class`)."""
    cls = likelihood_class(modality, protein_likelihood)
    return cls() if cls.binary else cls(n_features, encoder_input=encoder_input)
