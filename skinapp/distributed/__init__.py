"""The model core beyond one process: archive scoring on Ray Data (`ray_predict`), and the model as a Ray Serve
service (`model_service`) that app processes reach through a torch-free client (`model_client`)."""
