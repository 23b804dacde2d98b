"""Keras model definitions, training, evaluation, dense export and the model repository (later issue)."""
