"""The classifier f(x) = V·phi(x) + b as a Hugging Face model.

This file is copied into every saved artifact (transformers' custom-code mechanism), so it
imports only torch and transformers: ``AutoModelForSequenceClassification.from_pretrained(dir,
trust_remote_code=True)`` then loads an lpft model with no lpft installed.

The stock ``*ForSequenceClassification`` heads do not compute V·phi(x) + b: BERT's passes the
first token through a trained dense+tanh pooler, RoBERTa's adds a dense+tanh layer. The paper's
analysis (and its LP install) needs exactly one linear layer on phi, hence this class.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class LpftConfig(PretrainedConfig):
    """Config of an lpft classifier.

    Args:
        encoder: the encoder's config as a dict (``config.to_dict()``, with ``model_type``).
        pooling: ``"cls"`` (first token's last hidden state) or ``"mean"`` (mask-aware mean).
        classifier_dropout: dropout on phi(x) before the head, active in training only.
    """

    model_type = "lpft"

    def __init__(
        self,
        encoder: dict | None = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        **kwargs,
    ) -> None:
        self.encoder = encoder or {}
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def encoder_config(self) -> PretrainedConfig:
        """The encoder's config object."""
        settings = dict(self.encoder)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)


class LpftForSequenceClassification(PreTrainedModel):
    """An encoder, a pooling of its last hidden states (phi), dropout and one Linear head."""

    config_class = LpftConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True

    def __init__(self, config: LpftConfig) -> None:
        super().__init__(config)
        encoder_config = config.encoder_config()
        self.encoder = AutoModel.from_config(encoder_config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(encoder_config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            std = getattr(self.config.encoder_config(), "initializer_range", 0.02)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "encoder") and hasattr(self.encoder, "_init_weights"):
            self.encoder._init_weights(module)

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **encoder_inputs
    ) -> torch.Tensor:
        """phi(x): pooled last hidden states, shape (batch, hidden)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs
        ).last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **encoder_inputs,
    ) -> SequenceClassifierOutput:
        """Logits V·dropout(phi(x)) + b, and the cross-entropy loss when labels are given."""
        encoder_inputs.pop("return_dict", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        phi = self.features(input_ids, attention_mask, **encoder_inputs)
        logits = self.classifier(self.dropout(phi))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


LpftConfig.register_for_auto_class()
LpftForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
