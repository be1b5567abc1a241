"""What the trained restoration models of :mod:`.denoise` and :mod:`.superres` share."""

from __future__ import annotations

from pathlib import Path


class TrainedModel:
    """Mixin for a trained network held with its model card (``self.model``, ``self.model_card()``)."""

    def save(self, path) -> Path:
        """Write a safe checkpoint (weights + model card, no pickled code).

        Examples
        --------
        >>> denoiser.save("n2v.pt")  # doctest: +SKIP
        """
        from ..checkpoint import save_checkpoint

        return save_checkpoint(path, self.model, self.model_card())
