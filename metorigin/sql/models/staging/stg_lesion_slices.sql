-- Index of the DenseNet input slices: which row of which slice file is which lesion and slice.
{{ stage('lesion_slices') }}
