"""Hydra launcher ``hydra/launcher=packed``: numnet's packed training engine (:mod:`numnet.packing`)."""
