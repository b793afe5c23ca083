"""Training on HAM10000: data in memory, lesion-grouped folds, augmentations, losses and the loop."""
