"""Benchmarks: batchkit side by side with its peers, in one run.

``python3 -m benchmarks.run --quick`` prints the markdown table (see ``benchmarks/README.md``);
``python3 -m pytest benchmarks`` runs the same workloads as pytest-benchmark suites.
"""
