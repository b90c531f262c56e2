"""Synthetic head-CT cohorts with known hemorrhage truth (numpy/scipy/nibabel).

``make_scan`` builds one scan in memory; ``make_cohort`` writes a cohort in the PhysioNet CT-ICH
layout. See ``ugss.synth.cohort`` for the files and ``ugss.synth.scan`` for the options.
"""

from ugss.synth.cohort import CohortSummary, make_cohort
from ugss.synth.hemorrhage import TYPES
from ugss.synth.scan import ScanTruth, make_scan

__all__ = ["TYPES", "CohortSummary", "ScanTruth", "make_cohort", "make_scan"]
