"""Pure numpy kernels that turn frames and lightning into model inputs.

Contracts (stated once for the whole package)
---------------------------------------------
* Arrays are on the native ABI fixed grid of the frame, ``[H, W]``, rows north to
  south, exactly as :class:`ingest.abi.AbiImage` holds them; nothing is regridded.
* Channels are float32 and keep NaN where the input was missing. NaN is replaced
  only at the model boundary, by :func:`featurize.channels.model_input`, which
  reports the fraction it filled.
* Boxes: a box of even size *s* around pixel ``(r, c)`` spans rows
  ``r - s/2 .. r + s/2 - 1`` (columns likewise) — the pixels of the ``s × s``
  patch whose element ``[s/2, s/2]`` is ``(r, c)``. Out-of-frame and NaN pixels
  take no part in a box statistic (:mod:`featurize.boxes`).
* Times are aware UTC datetimes or float64 seconds since 1970-01-01T00:00:00Z.
* No TensorFlow, Kafka, Redis or prometheus-client imports, no I/O, no config
  reads; inputs are never mutated.
"""
