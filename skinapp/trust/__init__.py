"""When to trust the model: calibration, the balanced decision rule, warning signs and the manual-check policy,
the similar-case index and the out-of-distribution check, and applying them to a prediction (`assessment`)."""
