"""The perturb_op fault carried through the model: a kernel that computes one operator wrong.

The operator's outputs are shifted (FaultInjector.perturb), then the rest of the model runs on
them: a second model, cut from the first after that operator (its inputs are the
activations the later operators read), runs in TFLM keeping every tensor. So the device's
RESULT differs from TFLM on the host (`--layer-diff auto` finds the record) and the dump
shows the difference growing, or shrinking, towards the output, as on a real board.
"""

from __future__ import annotations

from dataclasses import replace

from deploykit.errors import BadInput
from deploykit.model.tflm_layers import LayerRunner, OpOutput


def tail_model(model: bytes, after: int) -> tuple[bytes, list[int]]:
    """A model of the operators after `after`, and the tensors it takes as inputs, in order."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    m = s.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = m.subgraphs[0]
    head, tail = graph.operators[:after + 1], graph.operators[after + 1:]
    made = {int(t) for t in graph.inputs} | {int(t) for op in head for t in op.outputs}
    wanted = [int(t) for op in tail for t in op.inputs] + [int(t) for t in graph.outputs]
    inputs = list(dict.fromkeys(t for t in wanted if t in made))
    graph.operators, graph.inputs = tail, inputs
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), inputs


class PerturbedModel:
    """Every operator's outputs, and the model outputs, with operator `op` perturbed."""

    def __init__(self, model: bytes, op: int, faults, full: LayerRunner | None = None):
        self.op, self.faults = op, faults
        self.full = full or LayerRunner(model)
        n_ops = len(self.full.parsed.operators)
        if not 0 <= op < n_ops:
            raise BadInput(f"perturb_op={op}: the model has operators 0..{n_ops - 1}; give one of those")
        self.tail: LayerRunner | None = None
        self.tail_inputs: list[int] = []
        if op + 1 < n_ops:
            data, self.tail_inputs = tail_model(model, op)
            self.tail = LayerRunner(data)

    def run(self, inputs: list[bytes]) -> list[list[OpOutput]]:
        ops = self.full.run(inputs)
        ops[self.op] = [replace(o, data=self.faults.perturb(o.op, o.dtype, o.data)) for o in ops[self.op]]
        if self.tail is None:
            return ops
        known = {o.tensor: o.data for outs in ops[:self.op + 1] for o in outs}
        known.update({t: inputs[i] for i, t in enumerate(self.full.parsed.input_indices)})
        later = self.tail.run([known[t] for t in self.tail_inputs])
        return ops[:self.op + 1] + [[replace(o, op=o.op + self.op + 1) for o in outs] for outs in later]

    def outputs(self, inputs: list[bytes]) -> list[bytes]:
        """The model's output tensors of one perturbed inference (what RESULT carries)."""
        by_tensor = {o.tensor: o.data for outs in self.run(inputs) for o in outs}
        return [by_tensor[t] for t in self.full.parsed.output_indices]
