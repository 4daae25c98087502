"""Chat models behind one factory: `get_chat_model("provider:model", settings)`."""

from hybrid.models.factory import (
    ModelSpec,
    clear_model_cache,
    get_chat_model,
    is_local_model,
    model_version,
    register_provider,
    unregister_provider,
)

__all__ = [
    "ModelSpec",
    "clear_model_cache",
    "get_chat_model",
    "is_local_model",
    "model_version",
    "register_provider",
    "unregister_provider",
]
