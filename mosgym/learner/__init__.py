"""learner: the model being fine-tuned. Owns the Learner protocol (train on a mixture, probe a
skill, evaluate), its transformers implementation (HFLearner: batches, AdamW and schedule,
probes for the rewards, dev loss and greedy accuracy), model loading, and the process group a
learner is spread over under torchrun (DDP, FSDP2). May import data, config and errors.
"""

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
