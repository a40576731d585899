"""Dataset preparation and EfficientNet training (GPU instance); reuses `lambda_function.datapath.preprocessing`."""
