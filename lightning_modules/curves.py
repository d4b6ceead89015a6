"""Learning curves kept by a module across checkpoints."""
from __future__ import annotations


class KeepsLearningCurve:
    """Mixin for a LightningModule that appends a point to `self.learning_curve` after each validation of fit and
    reports the curve at test. The curve is a plain attribute, so testing the best checkpoint after fit keeps the
    whole curve; checkpoints carry it too, so a run continued from its last.ckpt keeps its earlier epochs' points."""

    learning_curve: list

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["learning_curve"] = list(self.learning_curve)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # a module that has a curve already (testing the best checkpoint after fit) keeps its own, longer one
        if not self.learning_curve:
            self.learning_curve = [tuple(point) for point in checkpoint.get("learning_curve", [])]
