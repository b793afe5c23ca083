"""When to trust the model: calibration, the balanced decision rule, warning signs and the manual-check policy,
the similar-case index and the out-of-distribution check. Applying them to a prediction is
`skinapp.inference.assessment`, a layer up: it reads the model card and the `Prediction`."""
