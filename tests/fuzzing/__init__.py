"""Fuzzers of the files users hand to bnn: ``bnnpack`` mutates and runs ``.bnnpack`` files."""
