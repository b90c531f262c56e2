"""UGSS: uncertainty-guided semi-supervised intracranial hemorrhage segmentation.

Subpackages, by what they may import:
- ``ugss.runtime``: numpy, scipy, nibabel, pydicom, onnxruntime (never torch).
- ``ugss.dicom_node``: the runtime plus pynetdicom and highdicom (never torch).
- ``ugss.synth``: synthetic head-CT cohorts (numpy/scipy/nibabel/pydicom).
- ``ugss.train``: torch; ``ugss.export``: torch + onnx.
"""

__version__ = "0.2.0"
