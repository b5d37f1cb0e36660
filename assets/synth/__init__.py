"""A synthetic cohort that mimics the study's Table 1, for the demo and the tests.

No public CT data carries the primary-tumour origin of liver metastases, so the platform ships a
generator instead of data. See `cohort.generate_cohort`.
"""

from .cohort import SynthConfig, generate_cohort

__all__ = ["SynthConfig", "generate_cohort"]
