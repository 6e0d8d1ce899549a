"""Torch-free evaluation: task metrics, calibration, baselines, the chain's eval, plots, comparisons.

Imported by ``lora-router eval``, the export's parity gate, training's
best-epoch choice and the bench; it runs in the deploy install (no torch):
scikit-learn (the classifier baseline), scipy (the temperature fit) and matplotlib
are imported only by the functions that need them.
"""
