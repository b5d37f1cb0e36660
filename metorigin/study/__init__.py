"""Pure study code: split, selection, classifiers, the arms, evaluation, robustness, the model files."""
