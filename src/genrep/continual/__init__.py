"""Continual learning: scenarios, learners, the task runner, BinPlay (thesis ch.7–8) and the registry of
continual methods by name (`registry`: `get_learner`, `learner_names`, `register_learner`).

    from genrep.continual import build_scenario, run_scenario, BinPlay
    result = run_scenario(BinPlay(), build_scenario("split-mnist"), "runs/binplay")
"""

from genrep.continual.baselines import BASELINES, ExperienceReplay, FineTune, GenerativeReplay, JointTraining
from genrep.continual.binplay import BinPlay, BinPlaySettings
from genrep.continual.codes import binary_codes, code_capacity, task_code
from genrep.continual.learner import ContinualLearner
from genrep.continual.registry import LEARNERS, LearnerSpec, get_learner, learner_names, register_learner
from genrep.continual.runner import ContinualResult, classification_accuracy, run_scenario
from genrep.continual.scenario import Scenario, Task
from genrep.continual.scenarios import build_scenario, scenario_names
from genrep.continual.splits import class_incremental_split, dirichlet_split, energy_split

__all__ = [
    "BASELINES", "LEARNERS", "BinPlay", "BinPlaySettings", "ContinualLearner", "ContinualResult", "ExperienceReplay",
    "FineTune", "GenerativeReplay", "JointTraining", "LearnerSpec", "Scenario", "Task", "binary_codes",
    "build_scenario", "class_incremental_split", "classification_accuracy", "code_capacity", "dirichlet_split",
    "energy_split", "get_learner", "learner_names", "register_learner", "run_scenario", "scenario_names", "task_code",
]
