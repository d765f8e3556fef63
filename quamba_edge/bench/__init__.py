"""Benchmarks as a library: model shapes, roofline and Orin projection (:mod:`.roofline`), latency runs."""
