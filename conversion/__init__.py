"""Keras model to TFLite file plus sidecar (the model contract of `lambda_function.model_contract`)."""
