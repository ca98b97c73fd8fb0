"""mosgym inside your own training loop: a transformers `Trainer` or TRL's `SFTTrainer`.

This package owns the integration with Hugging Face trainers: `MixtureDataset` (an endless,
seeded, resumable stream over N skill datasets whose mixture can change at any step, sharded
per rank by accelerate), `MixtureCallback` (every S optimizer steps: the environment's rewards
on the Trainer's own model, any mosgym agent's next mixture, broadcast to every rank, logged
through `Trainer.log`, checkpointed in the Trainer's checkpoint folders), the Learner-protocol
adapter over the Trainer's model and the per-skill training-loss hook.

It is the last layer: it may import every other part of mosgym (data, learner, rewards, envs,
agents), and nothing in mosgym imports it. transformers is required; TRL only for SFTTrainer
(`pip install "mosgym[trl]"`).
"""

from mosgym.integrations.callback import STATE_FILE, MixtureCallback
from mosgym.integrations.dataset import MixtureDataset, skill_examples, tokenized_split
from mosgym.integrations.learner import TrainerLearner

__all__ = [
    "STATE_FILE",
    "MixtureCallback",
    "MixtureDataset",
    "TrainerLearner",
    "skill_examples",
    "tokenized_split",
]
