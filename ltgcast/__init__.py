"""ltgcast: the composition root. Nothing imports this package; it imports everything."""

__version__ = "0.1.0"
