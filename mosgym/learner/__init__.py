"""The model being fine-tuned: the Learner protocol and its transformers implementation."""

from mosgym.learner.base import EvalResult, Learner, ProbeResult, TrainStats
from mosgym.learner.hf import HFLearner
from mosgym.learner.model import LoadedModel, load_model

__all__ = [
    "EvalResult",
    "HFLearner",
    "Learner",
    "LoadedModel",
    "ProbeResult",
    "TrainStats",
    "load_model",
]
