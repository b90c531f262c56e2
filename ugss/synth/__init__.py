"""Synthetic head-CT cohorts with known hemorrhage truth (numpy/scipy/nibabel)."""
