"""qstar: reasoning models that improve with train-time and test-time compute."""

import os

# Must be set before torch loads its OpenMP runtime: with the default (active) wait policy two torch processes on
# 2 cores ran 7x slower. Users can still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
