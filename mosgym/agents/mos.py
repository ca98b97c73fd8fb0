"""MoS: the Mixture-of-Skills scorer trained with REINFORCE (Wu et al., EMNLP 2024).

Reads top to bottom:
1. `MosParams`: the settings (defaults = the paper and the authors' code).
2. Pure math: `reinforce_loss`, `warmup_loss` (shapes in the docstrings).
3. The scorer psi: N free logits started at 1.0 (the authors' code) or the paper's 2-layer
   MLP on an all-ones "datasets available" vector; both give a categorical p_psi over skills.
4. `warm_up`: fit p_psi to the temperature prior by MSE until the loss is below 1e-10.
5. `reinforce_update`: 200 Adam steps (lr 1e-4) on -sum_i R(i) log p_psi(i), with ONE Adam
   instance for the whole run (the warm-up uses it too, as in the authors' code).
6. `MosAgent`: act = the scorer's mixture; observe = one update from info["skill_rewards"].
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mosgym.agents.static import MixtureActions, resolve_tau
from mosgym.envs.spec import EnvSpec
from mosgym.errors import MosgymError
from mosgym.rewards import temperature_prior

log = logging.getLogger(__name__)
DTYPE = torch.float64  # the scorer is tiny; float64 lets the warm-up reach 1e-10 reliably


@dataclass
class MosParams:
    """The MoS scorer's settings. Defaults follow the paper and the authors' code."""

    scorer: str = "logits"
    """'logits': N free logits (the authors' code); 'mlp': the paper's 2-layer MLP whose input
    is the all-ones availability vector."""
    hidden_size: int = 64
    """Hidden width of the 'mlp' scorer."""
    prior_tau: float | str = "inf"
    """Temperature of the warm-up prior: 1 = PROP, 10 = TEMP, 'inf' = uniform (the paper's MoS;
    Table 3 compares priors)."""
    init_logit: float = 1.0
    """Initial value of every logit ('logits' scorer), as in the authors' code."""
    lr: float = 1e-4
    """Adam learning rate for the warm-up and every update."""
    update_steps: int = 200
    """Adam steps per scorer update (one update per env step)."""
    warmup_tol: float = 1e-10
    """The warm-up stops once MSE(p_psi, prior) is below this."""
    warmup_max_iters: int = 200_000
    """Give up (MosgymError) if the warm-up has not reached `warmup_tol` after this many steps."""
    reset_each_episode: bool = True
    """Restore the warmed-up scorer and its optimizer at every reset, so each episode is an
    independent MoS run (false: keep learning across episodes)."""


# --------------------------------------------------------------------------------------------
# Pure math


def reinforce_loss(logits: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """L(psi) = -sum_i R(i) log softmax(logits)_i: logits (N,), rewards (N,) -> scalar.

    Full information: every skill has a reward, nothing is sampled, no baseline. Its gradient
    w.r.t. the logits is p * sum(R) - R.
    """
    return -(rewards * torch.log_softmax(logits, dim=-1)).sum()


def warmup_loss(logits: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """MSE(softmax(logits), prior): logits (N,), prior (N,) -> scalar."""
    return torch.mean((torch.softmax(logits, dim=-1) - prior) ** 2)


# --------------------------------------------------------------------------------------------
# The scorer


class Scorer(nn.Module):
    """A parameterised categorical distribution over N skills: forward() -> logits (N,)."""

    def __init__(self, n: int, kind: str, hidden_size: int, init_logit: float) -> None:
        super().__init__()
        self.register_buffer("features", torch.ones(n, dtype=DTYPE))  # all skills available
        if kind == "logits":  # the authors' bias-free Linear(N, 1) applied elementwise
            self.weight = nn.Parameter(torch.full((n,), float(init_logit), dtype=DTYPE))
            self.mlp = None
        else:
            self.weight = None
            self.mlp = nn.Sequential(
                nn.Linear(n, hidden_size, dtype=DTYPE),
                nn.Tanh(),
                nn.Linear(hidden_size, n, dtype=DTYPE),
            )
            # A zero output layer starts p_psi uniform, like the free logits, so the warm-up
            # only has to travel from uniform to the prior (a random start can take minutes).
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.constant_(self.mlp[2].bias, float(init_logit))

    def forward(self) -> torch.Tensor:
        if self.mlp is None:
            return self.weight * self.features
        return self.mlp(self.features)

    def probabilities(self) -> np.ndarray:
        """(N,) float64 p_psi."""
        with torch.no_grad():
            return torch.softmax(self(), dim=-1).numpy().copy()


def build_scorer(n: int, params: MosParams, seed: int) -> Scorer:
    """The scorer, its MLP weights (if any) drawn from `seed` without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Scorer(n, params.scorer, params.hidden_size, params.init_logit)


def warm_up(
    scorer: Scorer, optimizer: torch.optim.Optimizer, prior: np.ndarray, tol: float, max_iters: int
) -> int:
    """Minimise MSE(p_psi, prior) until it is below `tol`; returns the Adam steps taken."""
    target = torch.as_tensor(prior, dtype=DTYPE)
    for it in range(max_iters + 1):
        loss = warmup_loss(scorer(), target)
        if loss.item() < tol:
            return it
        if it == max_iters:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    raise MosgymError(
        f"MoS warm-up: MSE to the prior is still {loss.item():.3g} (> {tol:g}) after "
        f"{max_iters} Adam steps; raise params.warmup_max_iters or params.lr, or loosen "
        "params.warmup_tol"
    )


def reinforce_update(
    scorer: Scorer, optimizer: torch.optim.Optimizer, rewards: np.ndarray, n_steps: int
) -> float:
    """`n_steps` Adam steps on `reinforce_loss` with rewards (N,); returns the last loss."""
    r = torch.as_tensor(rewards, dtype=DTYPE)
    loss = torch.zeros((), dtype=DTYPE)
    for _ in range(n_steps):
        loss = reinforce_loss(scorer(), r)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.item())


# --------------------------------------------------------------------------------------------
# The agent


class MosAgent:
    """The MoS data scheduler: one scorer update per env step from info["skill_rewards"]."""

    action_kind = "any"

    def __init__(self, name: str, params: MosParams) -> None:
        if params.scorer not in ("logits", "mlp"):
            raise MosgymError(f"agent {name}: params.scorer must be 'logits' or 'mlp'")
        for key in ("hidden_size", "update_steps", "lr", "warmup_tol", "warmup_max_iters"):
            if not getattr(params, key) > 0:
                raise MosgymError(f"agent {name}: params.{key} must be > 0")
        if not math.isfinite(params.init_logit):
            raise MosgymError(f"agent {name}: params.init_logit must be a finite number")
        self.name = name
        self.params = params
        self.tau = resolve_tau(params.prior_tau, f"agent {name}: params.prior_tau")
        self.n_updates = 0
        self.skipped_updates = 0
        self.warmup_iters = 0
        self.last_loss = math.nan

    def setup(self, spec: EnvSpec, seed: int) -> None:
        p = self.params
        self.n = len(spec.skill_names)
        self.scorer = build_scorer(len(spec.skill_names), p, seed)
        self.optimizer = torch.optim.Adam(self.scorer.parameters(), lr=p.lr)
        prior = temperature_prior(spec.train_sizes, self.tau)
        self.warmup_iters = warm_up(
            self.scorer, self.optimizer, prior, p.warmup_tol, p.warmup_max_iters
        )
        log.info("%s: warm-up reached the prior in %d Adam steps", self.name, self.warmup_iters)
        self._warm = copy.deepcopy((self.scorer.state_dict(), self.optimizer.state_dict()))
        self._actions = MixtureActions(spec, seed)

    def reset(self, obs: np.ndarray, info: dict[str, Any]) -> None:
        if self.params.reset_each_episode:
            scorer_state, optim_state = copy.deepcopy(self._warm)
            self.scorer.load_state_dict(scorer_state)
            self.optimizer.load_state_dict(optim_state)

    def probabilities(self) -> np.ndarray:
        """(N,) the scorer's current mixture p_psi."""
        return self.scorer.probabilities()

    def act(self, obs: np.ndarray) -> np.ndarray | int:
        return self._actions(self.probabilities())

    def observe(
        self,
        action: np.ndarray | int,
        reward: float,
        obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> None:
        rewards = np.asarray(info["skill_rewards"], dtype=np.float64)
        if rewards.shape != (self.n,):
            raise MosgymError(
                f"info['skill_rewards'] has shape {rewards.shape}, expected ({self.n},): the "
                "env does not follow the mosgym env contract"
            )
        if not np.all(np.isfinite(rewards)):  # one bad probe must not poison the scorer
            self.skipped_updates += 1
            log.warning("%s: non-finite skill rewards %s; update skipped", self.name, rewards)
            return
        self.last_loss = reinforce_update(
            self.scorer, self.optimizer, rewards, self.params.update_steps
        )
        self.n_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers): scorer, Adam state, sampler RNG and counters."""
        return {
            "scorer": {k: tensor_to_plain(v) for k, v in self.scorer.state_dict().items()},
            "optimizer": optimizer_to_plain(self.optimizer),
            "actions": self._actions.state_dict(),
            "n_updates": self.n_updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scorer.load_state_dict({k: plain_to_tensor(v) for k, v in state["scorer"].items()})
        optimizer_from_plain(self.optimizer, state["optimizer"])
        self._actions.load_state_dict(state["actions"])
        self.n_updates = int(state["n_updates"])
        self.skipped_updates = int(state["skipped_updates"])


# --------------------------------------------------------------------------------------------
# Checkpoint helpers: tensors <-> JSON-friendly plain data


def tensor_to_plain(t: torch.Tensor) -> dict[str, Any]:
    return {"dtype": str(t.dtype).removeprefix("torch."), "data": t.detach().cpu().tolist()}


def plain_to_tensor(d: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(d["data"], dtype=getattr(torch, d["dtype"]))


def optimizer_to_plain(opt: torch.optim.Optimizer) -> dict[str, Any]:
    sd = opt.state_dict()
    state = {
        str(i): {k: tensor_to_plain(v) if torch.is_tensor(v) else v for k, v in s.items()}
        for i, s in sd["state"].items()
    }
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in sd["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def optimizer_from_plain(opt: torch.optim.Optimizer, d: dict[str, Any]) -> None:
    state = {
        int(i): {k: plain_to_tensor(v) if isinstance(v, dict) else v for k, v in s.items()}
        for i, s in d["state"].items()
    }
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in d["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
