"""The knowledge base of question_answer: file format, retrieval, answering.

Torch-free (Python + numpy): the ONNX runtime answers with it on machines
without torch or scikit-learn.
"""

from .answerer import Answerer, Candidate
from .file import Entry, KnowledgeBase, check_knowledge_base, file_sha256, read_knowledge_base
from .index import CharTfidfIndex, normalize_text
from .settings import AnswerSettings

__all__ = [
    "AnswerSettings",
    "Answerer",
    "Candidate",
    "CharTfidfIndex",
    "Entry",
    "KnowledgeBase",
    "check_knowledge_base",
    "file_sha256",
    "normalize_text",
    "read_knowledge_base",
]
