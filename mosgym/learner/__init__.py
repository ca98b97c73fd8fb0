"""The model being fine-tuned: the Learner protocol and its transformers implementation."""

from mosgym.learner.base import EvalResult, Learner, ProbeResult, TrainStats

__all__ = ["EvalResult", "Learner", "ProbeResult", "TrainStats"]
