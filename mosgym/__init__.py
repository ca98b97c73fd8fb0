"""mosgym: learn how to mix fine-tuning data for LLMs (Mixture-of-Skills as a Gymnasium env).

Importing the package registers the environments:
- ``mosgym/MixtureOfSkills-v0``: real fine-tuning of a transformers causal LM.
- ``mosgym/MoSSim-v0``: the same problem on a calibrated learning-dynamics simulator.
"""

from gymnasium.envs.registration import register, registry

from mosgym.errors import MosgymError

__version__ = "0.1.0"
__all__ = ["MosgymError", "__version__"]

if "mosgym/MixtureOfSkills-v0" not in registry:
    register(
        id="mosgym/MixtureOfSkills-v0",
        entry_point="mosgym.envs.mixture_of_skills:MixtureOfSkillsEnv",
    )
if "mosgym/MoSSim-v0" not in registry:
    register(id="mosgym/MoSSim-v0", entry_point="mosgym.envs.sim_env:make_sim_env")
