"""Keras model to TFLite file plus sidecar (the model contract of `lambda_function.datapath.model_contract`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides the tools' own output
