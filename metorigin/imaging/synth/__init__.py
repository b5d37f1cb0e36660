"""A synthetic cohort that mimics the study's Table 1, for the demo and the tests.

No public CT data carries the primary-tumour origin of liver metastases, so the platform ships a
generator instead of data. See `cohort.generate_cohort`, and `append.append_patients` for new
(by default unlabelled) patients added to a generated cohort.
"""

from .append import append_patients
from .cohort import SynthConfig, generate_cohort

__all__ = ["SynthConfig", "append_patients", "generate_cohort"]
