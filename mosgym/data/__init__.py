"""Skills: built-in procedural datasets, local jsonl files and Hugging Face datasets."""

from mosgym.data.builtin import TASKS, default_skill_configs, generate_splits
from mosgym.data.formatting import tokenize_conversation, tokenize_split
from mosgym.data.loader import default_cache_dir, load_skills
from mosgym.data.types import IGNORE_INDEX, Skill, TokenizedSplit

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "Skill",
    "TokenizedSplit",
    "default_cache_dir",
    "default_skill_configs",
    "generate_splits",
    "load_skills",
    "tokenize_conversation",
    "tokenize_split",
]
