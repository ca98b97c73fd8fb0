"""Mixture-of-Skills inside your own transformers Trainer.

A plain `Trainer` fine-tunes the tiny Llama (built from a config, no download) on mosgym's six
built-in skills; every 50 optimizer steps the MoS scorer (COSSIM + EMA, agents/mos-cossim-ema)
computes the paper's reward on 64 probe examples per skill with the Trainer's own model and
sets the mixture the data stream samples from next. About 30 s of CPU time (tiny model).

    python examples/hf_trainer.py
    python examples/hf_trainer.py --report-to mlflow      # weights, rewards, dev loss in MLflow
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from mosgym.config import ModelConfig
from mosgym.data import default_skill_configs, load_skills
from mosgym.integrations import MixtureCallback, MixtureDataset, skill_examples
from mosgym.learner.model import load_model

AGENTS = Path(__file__).resolve().parents[1] / "agents"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", default=str(AGENTS / "mos-cossim-ema.yaml"))
    p.add_argument("--steps", type=int, default=200, help="optimizer steps")
    p.add_argument("--interval", type=int, default=50, help="S: steps between mixture updates")
    p.add_argument("--scale", type=float, default=0.25, help="share of each skill's examples")
    p.add_argument("--report-to", default="none", help="none, mlflow, tensorboard, wandb")
    p.add_argument("--out", default=None, help="checkpoint folder (default: a temporary one)")
    a = p.parse_args()

    loaded = load_model(ModelConfig(name="tiny"), seed=0)
    configs = default_skill_configs()
    for c in configs:  # fewer examples than the env's default: tokenized in seconds
        c.n_train = max(64, int(c.n_train * a.scale))
    skills = load_skills(configs, loaded.tokenizer, max_length=128, data_seed=0)

    # --- what a user writes: a mixture stream, a Trainer, the callback ---------------------
    mixture = MixtureDataset(skill_examples(skills), seed=0)  # {skill: [{input_ids, labels}]}
    args = TrainingArguments(
        output_dir=a.out or tempfile.mkdtemp(prefix="mosgym-trainer-"),
        max_steps=a.steps,  # the stream is endless: the run is counted in optimizer steps
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        warmup_steps=0.1,  # a float: a share of max_steps
        weight_decay=0.1,
        logging_steps=a.interval,
        save_steps=a.steps // 2,
        report_to=a.report_to,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=loaded.model,
        args=args,
        train_dataset=mixture,
        data_collator=DataCollatorForSeq2Seq(loaded.tokenizer),  # pads labels with -100
    )
    callback = MixtureCallback(
        trainer,
        mixture,
        a.agent,
        interval=a.interval,
        probe_size=64,
        dev=skill_examples(skills, "dev"),  # per-skill dev loss, logged at every update
    )
    trainer.add_callback(callback)
    trainer.train()  # trainer.train(resume_from_checkpoint=True) continues the same path
    # ----------------------------------------------------------------------------------------

    names = mixture.skill_names
    print(f"\n{'step':>5}  " + "  ".join(f"{n:>7}" for n in names) + "   dev loss (mean)")
    for h in callback.history:
        weights = "  ".join(f"{w:7.3f}" for w in h["mixture"])
        print(f"{h['step']:>5}  {weights}   {h['dev_loss'].mean():.3f}")
    print(f"checkpoints, each with the mixing state, in {args.output_dir}")


if __name__ == "__main__":
    main()
