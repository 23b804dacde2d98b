"""Pure numpy kernels that turn frames and lightning into model inputs (built in a later issue).

No TensorFlow, Kafka, Redis or prometheus-client imports, no I/O, no config reads.
"""
