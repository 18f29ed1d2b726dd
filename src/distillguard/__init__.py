"""distillguard: detect distillation at scale (model-output harvesting) in LLM API logs."""

__version__ = "0.1.0"
