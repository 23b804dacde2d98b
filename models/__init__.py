"""Offline modelling: Keras models, datasets, training, evaluation, dense export, the model repository and its gate."""
