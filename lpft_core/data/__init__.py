"""Reading, checking and splitting datasets; encoding them for a tokenizer."""
