"""file_name_pick: every file reference, exactly as written (docs/labelling-guide.md §3)."""

from ..config import SPAN_EXTRACTION, TaskSpec
from .registry import register_task

FILE_NAME = "FILE"

FILE_NAME_PICK = register_task(
    TaskSpec(
        name="file_name_pick",
        instruction="文件名称提取",
        kind=SPAN_EXTRACTION,
        labels=(FILE_NAME,),
        description="file names (with their paths) in a request, as substrings of it",
    )
)
