"""Benchmarks of icl_mech against a re-creation of the authors' trainer (run ``python -m benchmarks``)."""
