"""The classifier f(x) = V·phi(x) + b: building it, LoRA, its saved form, dropout."""
