"""Training and evaluation engines."""

from edgeseg.engine.evaluate import confusion_over, evaluate
from edgeseg.engine.train import TrainResult, train

__all__ = ["TrainResult", "confusion_over", "evaluate", "train"]
