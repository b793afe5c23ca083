"""The model core beyond one process: archive scoring on Ray Data (`ray_predict`)."""
