"""Predictions from a saved model directory."""
