"""Measuring the model: metrics, out-of-fold and external evaluation (`python -m skinapp evaluate`), and how well
the trust machinery works on held-out data (`trust_report`)."""
