"""Which attention implementation runs where: the one declaration of the choices and the one resolver.

A model's config carries ``attention_impl``, one of :data:`CHOICES` (``from_pretrained(..., attention=...)``).
Each kind of attention site in the zoo is an :class:`AttentionSite` below, stating the implementations it runs
and what ``"auto"`` means for it; a family config lists the sites its layers have
(``ZooConfig.attention_sites``), and the config refuses, when the model is loaded, a choice that none of them
runs (``"blocked"`` for Llama, ``"pallas"`` for LiLT or XLM), naming the field and the choices it accepts.

A site that does not run the chosen implementation runs its dense ``reference`` (LED with ``"pallas"``: the
encoder's sliding-window layers use the kernels, the decoder's masked attention stays dense); each site's
``runs`` says so, and the README's table lists the sites per family.
"""

from __future__ import annotations

import dataclasses

from common.kernels.ops import on_accelerator

IMPLEMENTATIONS = ("reference", "blocked", "pallas")
CHOICES = IMPLEMENTATIONS + ("auto",)


@dataclasses.dataclass(frozen=True)
class AttentionSite:
    """One kind of attention computation and the implementations it has."""

    name: str
    runs: tuple[str, ...]  # implementations this site has; "reference" (dense, masked) is always one
    auto_on_accelerator: str  # what "auto" means on GPU / TPU
    auto_on_cpu: str  # ... and elsewhere

    def resolve(self, choice: str) -> str:
        """The implementation this site runs for ``choice`` on this platform."""
        if choice == "auto":
            return self.auto_on_accelerator if on_accelerator() else self.auto_on_cpu
        if choice not in IMPLEMENTATIONS:
            raise ValueError(f"attention implementation {choice!r} is unknown; expected one of {CHOICES}")
        return choice if choice in self.runs else "reference"


SLIDING_WINDOW = AttentionSite("sliding-window + global self-attention (Longformer, LED's encoder)",
                               ("reference", "blocked", "pallas"), auto_on_accelerator="pallas", auto_on_cpu="blocked")
CAUSAL = AttentionSite("causal self-attention over a whole sequence (Llama's forward and prefill)",
                       ("reference", "pallas"), auto_on_accelerator="pallas", auto_on_cpu="reference")
DENSE = AttentionSite("attention with an explicit mask (decoding steps, cross-attention, LED's decoder, LiLT, XLM)",
                      ("reference",), auto_on_accelerator="reference", auto_on_cpu="reference")


def accepted_choices(sites: tuple[AttentionSite, ...]) -> tuple[str, ...]:
    """The choices a family with these sites accepts: every implementation one of them runs, and "auto"."""
    return tuple(impl for impl in IMPLEMENTATIONS if any(impl in site.runs for site in sites)) + ("auto",)
