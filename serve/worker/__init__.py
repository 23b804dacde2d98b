"""The nowcast worker, in named parts: frame events in, probability grids stored and announced.

* :mod:`serve.worker.loop` — :class:`NowcastWorker`, the loop that drives the parts (its docstring is the
  worker's contract);
* :mod:`serve.worker.settings` — :class:`WorkerSettings`, light to import (the CLI's defaults);
* :mod:`serve.worker.glm` — :class:`~serve.worker.glm.GlmIndex`, the lightning context every worker holds whole;
* :mod:`serve.worker.ledger` — :class:`~serve.worker.ledger.OffsetLedger`, how far each partition may be committed;
* :mod:`serve.worker.step` — :class:`~serve.worker.step.ScoringStep`, one frame read, scored and stored;
* :mod:`serve.worker.trend` — :class:`~serve.worker.trend.PreviousFrames`, the frame 15 minutes before for
  temporal models (``ir_trend``), and the policy when there is none;
* :mod:`serve.worker.followups` — live verification and drift, off the frame's path;
* :mod:`serve.worker.sinks` — :class:`~serve.worker.sinks.SinkFeed`, extra sinks (Redis) retried and back-filled.
"""
