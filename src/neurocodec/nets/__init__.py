"""Neural networks: layers, probability models used in training, and the photo model."""
