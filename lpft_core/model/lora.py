"""LoRA adapters through peft, on the attention query and value projections."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from lpft_core.errors import ConfigError
from lpft_core.model.modeling_lpft import LpftForSequenceClassification


def lora_targets(model: LpftForSequenceClassification) -> list[str]:
    """The query/value projection names of the encoder's architecture (peft's own table:
    ``query``/``value`` for BERT and RoBERTa, ``q_lin``/``v_lin`` for DistilBERT, ...)."""
    model_type = model.config.encoder.get("model_type", "")
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if not targets:
        raise ConfigError(
            "model",
            f"no known LoRA target modules for architecture {model_type!r}; use method ft or "
            "lp_ft with this model",
        )
    return list(targets)


def apply_lora(model: LpftForSequenceClassification, r: int, alpha: float) -> PeftModel:
    """Wrap ``model`` with LoRA (dropout 0, as the paper) on query/value; the head stays
    trainable and is saved with the adapter (``modules_to_save``)."""
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=lora_targets(model),
        modules_to_save=["classifier"],
        bias="none",
    )
    return get_peft_model(model, config)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters the optimiser updates."""
    return [p for p in model.parameters() if p.requires_grad]
