"""Helpers the tests share (no tests here): a served process, the four-task export, the Ray scenario."""
