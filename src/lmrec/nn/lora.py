"""LoRA fine-tuning of the sentence-transformer text encoder (``peft``; meant for a GPU).

:class:`LoraTextEncoder` is a trainable copy of the encoder with low-rank adapters on its attention
projections. The two-tower model (``lora_rank > 0``) trains it jointly with the towers: item text
vectors then come from the adapted encoder, and a saved model keeps only the small adapter tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmrec.errors import LmrecError

__all__ = ["LoraTextEncoder"]


class LoraTextEncoder(nn.Module):
    """A trainable copy of the sentence-transformer with LoRA adapters (``peft``) on its attention.

    The item profile texts are tokenised once and kept as buffers, so a training step only indexes
    them. ``encode_items(idx)`` returns L2-normalised text vectors with gradients into the adapters;
    ``adapter_state()`` is the (small) set of adapter tensors a saved model keeps for text queries.
    """

    _peft: Any  # the peft wrapper (set in __init__; kept out of the submodules)

    def __init__(
        self,
        model_path: str,
        rank: int,
        alpha: float,
        texts: list[str] | None = None,
        max_seq_length: int = 64,
        dropout: float = 0.0,
        top_layers: int | None = None,
    ) -> None:
        super().__init__()
        try:
            from peft import LoraConfig, get_peft_model
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as exc:
            raise LmrecError(
                f"two_tower lora_rank > 0 needs {exc.name}: pip install peft sentence-transformers"
            ) from exc
        import transformers.utils.logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar inside a fit
        try:
            st = SentenceTransformer(model_path, device="cpu", local_files_only=Path(model_path).exists())
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        base_max_len = int(st.max_seq_length or max_seq_length)
        st.max_seq_length = min(base_max_len, max_seq_length)
        backbone: nn.Module = st[0].auto_model  # type: ignore[assignment]
        names = {n.rsplit(".", 1)[-1] for n, _ in backbone.named_modules()}
        targets = [t for t in ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin") if t in names]
        if not targets:
            raise LmrecError(f"two_tower LoRA: no attention projections (query/value) found in {model_path}")
        # adapters on the top ``top_layers`` transformer layers only: backpropagation then stops there,
        # which is most of a CPU step's cost
        n_layers = int(getattr(getattr(backbone, "config", None), "num_hidden_layers", 0) or 0)
        layers = list(range(max(0, n_layers - top_layers), n_layers)) if top_layers and n_layers else None
        lora = LoraConfig(
            layers_to_transform=layers,
            r=rank,
            lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
            target_modules=targets,
            lora_dropout=dropout,
            bias="none",
        )
        peft_model = get_peft_model(backbone, lora)
        st[0].auto_model = peft_model
        self.st = st
        # the PeftModel wrapper itself (adapter state, merging); sentence-transformers >= 6 keeps only
        # the wrapped transformer in ``auto_model``. Not a submodule: its parameters are already ours.
        self.__dict__["_peft"] = peft_model
        self.base_max_seq_length = base_max_len
        self._token_keys: list[str] = []
        if texts is not None:
            feats = self._tokenize(texts)
            for k, v in feats.items():
                if isinstance(v, Tensor):
                    self.register_buffer(f"tok_{k}", v, persistent=False)
                    self._token_keys.append(k)

    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        # sentence-transformers >= 6 renamed tokenize() to preprocess()
        fn = getattr(self.st, "preprocess", None) or self.st.tokenize
        return dict(fn(texts))

    def _embed(self, feats: dict[str, Tensor]) -> Tensor:
        mask = feats["attention_mask"]
        width = int(mask.sum(1).max().item()) if mask.numel() else 1
        feats = {k: v[:, :width] for k, v in feats.items()}
        return F.normalize(self.st(feats)["sentence_embedding"].float(), dim=-1)

    def encode_items(self, idx: Tensor) -> Tensor:
        """Text vectors of items ``idx`` (internal indices) from the adapted encoder."""
        return self._embed({k: getattr(self, f"tok_{k}")[idx] for k in self._token_keys})

    def encode_texts(self, texts: list[str]) -> Tensor:
        feats = self._tokenize(texts)
        device = next(self.parameters()).device
        return self._embed({k: v.to(device) for k, v in feats.items() if isinstance(v, Tensor)})

    def adapter_state(self) -> dict[str, np.ndarray]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().numpy() for k, v in get_peft_model_state_dict(self._peft).items()}

    def merged(self) -> Any:
        """A plain ``SentenceTransformer`` with the adapters merged into the weights (no peft needed to
        load it); it reads the base model's full ``max_seq_length``. Call once, after training: the
        adapters are folded into (and so removed from) this module's own weights."""
        self.st[0].auto_model = self._peft.merge_and_unload()
        self.st.max_seq_length = self.base_max_seq_length
        return self.st

    def load_adapter_state(self, state: dict[str, np.ndarray]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self._peft, {k: torch.from_numpy(np.array(v)) for k, v in state.items()})
