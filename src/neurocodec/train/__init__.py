"""Training: data sampling, the rate-distortion loop, and export of shipped weights."""
