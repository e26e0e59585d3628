"""Fuzzing and forgery tools for the licence reader, the verifier and the config.

``mutations`` damages licence files the ways a tamperer or a transport would;
``make_corpus`` writes a deterministic corpus of forged licence files;
``fuzz_licence`` runs the long fuzzing campaigns. The test suite imports the first
two for its shorter, in-suite runs; see ``docs/security.md`` for the figures.
"""
