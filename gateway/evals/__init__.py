"""Eval suites: assertions, suite files, the runner and its reports."""
