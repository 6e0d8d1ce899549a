"""lora-router inside other frameworks, one module per framework, each behind its own extra.

Nothing is imported here: ``lora_router.integrations.langchain`` needs the
``langchain`` extra and is imported only by those who use it.
"""
