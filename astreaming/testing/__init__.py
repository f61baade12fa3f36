"""Test support used by tests, demo and benchmarks: fake servers, fault injection, generators."""
