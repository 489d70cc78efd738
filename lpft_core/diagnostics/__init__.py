"""What the paper reads off a model: the exact NTK split into its two parts, its
statistics, and the change of the features."""
