"""The imaging pipeline: cohort ingest, and (later) segmentation, lesions, radiomics and slices."""
