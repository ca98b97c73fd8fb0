"""A data-mixing policy trained in mosgym's simulator, deployed inside TRL's SFTTrainer.

`agents/ppo-from-sim.yaml` is a PPO policy trained on the calibrated simulator of the six
built-in skills (policies/ppo-sim-skills-tiny.zip). Here it steers a real fine-tuning run of
the tiny Llama with TRL's SFTTrainer and completion-only loss (only response tokens are
trained): every 50 steps the callback builds the environment's observation (per-skill dev
loss relative to the start, mixture, epochs consumed, last reward, progress) and the policy
answers with the next mixture. About 30 s of CPU time (tiny model).

    pip install "mosgym[trl]"
    python examples/trl_sft.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from trl import SFTConfig, SFTTrainer

from mosgym.config import ModelConfig
from mosgym.data import default_skill_configs, load_skills
from mosgym.integrations import MixtureCallback, MixtureDataset, skill_examples
from mosgym.learner.model import load_model

AGENTS = Path(__file__).resolve().parents[1] / "agents"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", default=str(AGENTS / "ppo-from-sim.yaml"))
    p.add_argument("--steps", type=int, default=200, help="optimizer steps")
    p.add_argument("--interval", type=int, default=50, help="S (the policy was trained with 50)")
    p.add_argument("--scale", type=float, default=0.25, help="share of each skill's examples")
    p.add_argument("--report-to", default="none", help="none, mlflow, tensorboard, wandb")
    a = p.parse_args()

    loaded = load_model(ModelConfig(name="tiny"), seed=0)
    configs = default_skill_configs()  # the policy's skills, in its order
    for c in configs:
        c.n_train = max(64, int(c.n_train * a.scale))
    skills = load_skills(configs, loaded.tokenizer, max_length=128, data_seed=0)

    # Tokenized examples with a completion mask: TRL turns it into labels (-100 on the prompt).
    mixture = MixtureDataset(skill_examples(skills, mask="completion_mask"), seed=0)
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="mosgym-sft-"),
        max_steps=a.steps,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        warmup_steps=0.1,
        completion_only_loss=True,
        max_length=128,
        logging_steps=a.interval,
        save_strategy="no",
        report_to=a.report_to,
        disable_tqdm=True,
        bf16=torch.cuda.is_available(),  # TRL's default (bf16) needs a GPU
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=mixture.as_hf_dataset(),  # a datasets.IterableDataset reading the stream
        processing_class=loaded.tokenizer,
    )
    callback = MixtureCallback(
        trainer,
        mixture,
        a.agent,
        interval=a.interval,
        probe_size=64,
        dev=skill_examples(skills, "dev"),  # the policy observes per-skill dev loss
    )
    trainer.add_callback(callback)
    trainer.train()

    names = mixture.skill_names
    print(f"\n{'step':>5}  " + "  ".join(f"{n:>7}" for n in names) + "   dev loss (mean)")
    for h in callback.history:
        weights = "  ".join(f"{w:7.3f}" for w in h["mixture"])
        print(f"{h['step']:>5}  {weights}   {h['dev_loss'].mean():.3f}")


if __name__ == "__main__":
    main()
