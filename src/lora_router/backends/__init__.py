"""Backends: what turns encoded inputs into head logits, and nothing more.

``torch_peft`` (one base in PyTorch, every task's LoRA adapter, ``set_adapter``
per task) and ``onnx`` (exported models in onnxruntime: merged, shared, multi
and trunk layouts). Each gives ``logits(task, batch)``; ``core.TaskPredictor``
turns logits into results for every backend alike. ``onnx`` never imports torch.
"""
