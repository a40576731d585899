"""The data path and the model: image source -> bytes -> pixels -> probabilities -> answer."""
