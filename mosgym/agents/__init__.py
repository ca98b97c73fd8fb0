"""Data-scheduling agents: the MoS scorer, static priors, the ODM bandit and SB3 algorithms.

Agents follow the `Agent` protocol (act/observe); SB3 learners are `SelfDrivingAgent`s that
step the env themselves. Configs live in the top-level agents/ folder as YAML.
"""

from mosgym.agents.base import Agent, EnvSpec
from mosgym.agents.mos import MosAgent, MosParams
from mosgym.agents.odm import ODMAgent, ODMParams
from mosgym.agents.registry import (
    AgentConfig,
    check_compatible,
    list_agent_configs,
    load_agent_config,
    make_agent,
)
from mosgym.agents.sb3 import (
    MetricsWriter,
    SB3Agent,
    SB3Params,
    SB3PolicyAgent,
    SB3PolicyParams,
    SelfDrivingAgent,
)
from mosgym.agents.static import StaticAgent, StaticParams

__all__ = [
    "Agent",
    "AgentConfig",
    "EnvSpec",
    "MetricsWriter",
    "MosAgent",
    "MosParams",
    "ODMAgent",
    "ODMParams",
    "SB3Agent",
    "SB3Params",
    "SB3PolicyAgent",
    "SB3PolicyParams",
    "SelfDrivingAgent",
    "StaticAgent",
    "StaticParams",
    "check_compatible",
    "list_agent_configs",
    "load_agent_config",
    "make_agent",
]
