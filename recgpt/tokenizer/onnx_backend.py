"""A faster CPU encoder: the sentence-transformers model exported to ONNX and run by ONNX Runtime.

`embed.backend=onnx` runs the exported fp32 graph (the same vectors as torch within ~1e-6);
`embed.backend=onnx-int8` runs it with dynamic int8 weights on the MatMuls only, per output channel (the
default dynamic quantization of every op, token embeddings included, lost too much: cosine to fp32 down to 0.89
on amazon_scientific texts; MatMul-only per-channel keeps it above 0.98 and is as fast).

The export is made offline from the local torch weights (transformer + mean pooling + normalisation in one
graph, checked against the model's modules.json) once, under `<embed.cache_dir>/models/onnx/<key>/`, behind a
file lock so that several processes export it once. sentence-transformers' own `backend="onnx"` is not used:
it needs optimum-onnx, which pins transformers < 4.58.

Needs the `fast` extra: pip install 'recgpt[fast]' (onnx, onnxruntime).
"""
import json
import os
import warnings
from pathlib import Path

import numpy as np

from recgpt.io import ArtifactError

BACKENDS = ("torch", "onnx", "onnx-int8")


def _check_pipeline(model_path: Path) -> int:
    """The modules the one-graph export reproduces: Transformer, mean Pooling, optional Normalize (last).
    Returns the max sequence length."""
    modules = json.loads((model_path / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        raise ArtifactError(f"{model_path}: embed.backend=onnx exports Transformer + mean Pooling (+ Normalize), "
                            f"this model has {kinds}; use embed.backend=torch")
    pooling = json.loads((model_path / modules[1]["path"] / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
            v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"):
        raise ArtifactError(f"{model_path}: embed.backend=onnx supports mean pooling only; use embed.backend=torch")
    config = model_path / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 512)) if config.exists() else 512


def _export(model_path: Path, target: Path, normalize: bool) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    class Pooled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weight = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    model = AutoModel.from_pretrained(str(model_path)).eval()
    example = AutoTokenizer.from_pretrained(str(model_path))(["an example", "a longer example text"],
                                                              padding=True, return_tensors="pt")
    tmp = target.with_suffix(".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python branches (checked in tests)
        torch.onnx.export(Pooled(model), (example["input_ids"], example["attention_mask"]), str(tmp),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)
    os.replace(tmp, target)


def exported_model(model_path: str, backend: str, folder: Path) -> Path:
    """Path of the .onnx file for `backend`, exported (and quantized) once into `folder`."""
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    normalize = json.loads((Path(model_path) / "modules.json").read_text())[-1]["type"].endswith("Normalize")
    with FileLock(str(folder / "export.lock")):
        if not fp32.exists():
            _export(Path(model_path), fp32, normalize)
        if backend == "onnx-int8" and not int8.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = int8.with_suffix(".tmp")
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
            os.replace(tmp, int8)
    return int8 if backend == "onnx-int8" else fp32


class OnnxEncoder:
    """encode(texts, batch_size) -> float32 [N, D], like SentenceTransformer.encode for the supported models."""

    def __init__(self, model_path: str, backend: str, folder: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ArtifactError(f"embed.backend={backend} needs ONNX Runtime: pip install 'recgpt[fast]'") from None
        from transformers import AutoTokenizer

        import torch

        self.max_length = _check_pipeline(Path(model_path))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads torch would use
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(exported_model(model_path, backend, folder)), options,
                                            providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 64, **_) -> np.ndarray:
        # Batches of similar length pad little: longest first, as SentenceTransformer.encode does.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = None
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            vectors = self.session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                              "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), np.float32)
            out[rows] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)
