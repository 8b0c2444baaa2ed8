"""Workflows that orchestrate the layers below: ``compare`` (train, evaluate, profile and
bench several networks under one budget) and its report, ``export`` and ``compress`` of a
checkpoint."""
