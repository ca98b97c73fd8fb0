"""envs: the Gymnasium environment. Owns MixtureOfSkillsEnv (action -> mixture -> S training
steps of a learner -> MoS rewards -> observation), the action mapping (logits or one skill ->
mixture, and back), the EnvSpec an agent sees, and the two registered ids: MixtureOfSkills-v0
(an HFLearner) and MoSSim-v0 (the simulator's learner, the same spaces and info keys). May
import sim, rewards, learner, data, config and errors; never agents or anything above.
"""
