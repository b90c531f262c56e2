"""Synthetic head-CT cohorts with known hemorrhage truth (numpy/scipy/nibabel).

``make_case`` builds one scan in memory with its intracranial cavity (``make_scan``: the same
scan as a (volume, mask, truth) tuple); ``make_cohort`` writes a cohort in the PhysioNet CT-ICH
layout. See ``ugss.synth.cohort`` for the files and ``ugss.synth.scan`` for the options.
"""

from ugss.synth.cohort import CohortSummary, make_cohort
from ugss.synth.hemorrhage import TYPES
from ugss.synth.scan import ScanTruth, SynthCase, make_case, make_scan

__all__ = [
    "TYPES",
    "CohortSummary",
    "ScanTruth",
    "SynthCase",
    "make_case",
    "make_cohort",
    "make_scan",
]
