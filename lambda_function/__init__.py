"""The serving package: what runs inside the Lambda container image (no TensorFlow, no Keras)."""
