"""data: the skills. Owns loading N datasets (built-in procedural skills, local jsonl, Hugging
Face datasets by name), formatting them through a chat template, tokenizing once (cached, no
pickle) and masking labels to the response tokens. The bottom stage: it may import only
mosgym.errors and mosgym.config.
"""

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
