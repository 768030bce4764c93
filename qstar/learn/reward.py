"""Old name of :mod:`qstar.learn.reward_model` (training ORM/PRM verifiers), kept only because benchmarks/prm.py
still imports these from here; delete it once that script imports ``qstar.learn.reward_model``."""

from qstar.learn.reward_model import fit_reward, label_chains, planted_error_records, reward_items  # noqa: F401
