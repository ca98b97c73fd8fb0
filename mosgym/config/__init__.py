"""config: typed configuration, shared by every stage. The dataclasses (schema) hold one
docstring per field; YAML files are plain data that round-trip into them strictly (loading):
unknown keys and wrong types are a MosgymError naming the key and the file. A foundation
package: it may import only mosgym.errors.
"""

from mosgym.config.loading import (
    apply_overrides,
    flatten,
    from_dict,
    load_env_config,
    parse_override,
    read_yaml,
    to_dict,
)
from mosgym.config.lookup import config_dirs, find_config, list_configs
from mosgym.config.schema import (
    ActionConfig,
    EnvConfig,
    ModelConfig,
    RewardConfig,
    SkillConfig,
    TrainConfig,
)

__all__ = [
    "ActionConfig",
    "EnvConfig",
    "ModelConfig",
    "RewardConfig",
    "SkillConfig",
    "TrainConfig",
    "apply_overrides",
    "config_dirs",
    "find_config",
    "list_configs",
    "flatten",
    "from_dict",
    "load_env_config",
    "parse_override",
    "read_yaml",
    "to_dict",
]
