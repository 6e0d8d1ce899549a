"""A predictor in a few lines: the default chain's four tasks with fixed results, for the service's tests.

No model runs: what is tested is the service around it (batching, traces, capture, spans).
"""

from __future__ import annotations

from types import SimpleNamespace

from lora_router.core.chain import Chain
from lora_router.tasks import get_task

TASK_Q = "帮我把sales_2024.csv导入到ODS层"  # classifier -> type -> file_name_pick: route task
KB_Q = "数据清洗流程是什么？"  # classifier -> type -> question_answer: route answer
CHAT_Q = "今天天气怎么样"  # classifier: route general
HOLD = "等一下"  # held in the model until the test lets it go

CANNED = {
    ("question_classifier", TASK_Q): {"predicted_label": "数据平台相关问题", "confidence": 0.91},
    ("question_classifier", KB_Q): {"predicted_label": "数据平台相关问题", "confidence": 0.88},
    ("question_classifier", CHAT_Q): {"predicted_label": "通用问题", "confidence": 0.77},
    ("question_type_classifier", TASK_Q): {"predicted_label": "任务处理", "confidence": 0.83},
    ("question_type_classifier", KB_Q): {"predicted_label": "问题回答", "confidence": 0.86},
    ("file_name_pick", TASK_Q): {"file_names": ["sales_2024.csv"],
                                 "spans": [{"text": "sales_2024.csv", "start": 3, "end": 17, "score": 0.95}]},
    ("question_answer", KB_Q): {"answer": "先去重，再补缺失值。", "kb_id": "kb-007", "confidence": 0.72,
                                "candidates": []},
}


class CannedPredictor:
    """The four tasks of the default chain with fixed results, and every batch it was asked, recorded."""

    def __init__(self):
        self.chain = Chain.load()
        self.specs = {name: get_task(name) for name in self.chain.tasks()}
        self.encoders = {name: SimpleNamespace(max_length=64) for name in self.specs}  # every question fits
        self.batches: list[list[tuple[str, str]]] = []
        self.hold = None  # a threading.Event that HOLD waits for

    def predict_mixed(self, items):
        self.batches.append(list(items))
        if self.hold is not None and any(text == HOLD for _, text in items):
            self.hold.wait(10)
        out = []
        for task, text in items:
            result = dict(CANNED.get((task, text), {"predicted_label": "无关问题", "confidence": 0.99}))
            if "predicted_label" in result:
                result["probabilities"] = {result["predicted_label"]: result["confidence"]}
            out.append(result)
        return out
