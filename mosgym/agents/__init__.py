"""agents: the data-scheduling policies. Owns the Agent protocol (act/observe), the MoS
REINFORCE scorer, static temperature priors, the ODM bandit, the Stable-Baselines3 adapter
(learning online, or a saved policy) and the agent YAML registry. Agents follow the protocol;
SB3 learners are `SelfDrivingAgent`s that step the env themselves. May import envs (the spec
and action mapping), rewards (temperature priors), config and errors; never experiment.
"""

from mosgym.agents.base import Agent
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
from mosgym.envs.spec import EnvSpec

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
