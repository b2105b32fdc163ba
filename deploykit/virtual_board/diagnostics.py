"""What a `--diagnostics` firmware keeps, on the virtual board: per-op ticks and tensors.

Per-operator ticks come from the cost model (each operator's cost.op_cycles, with its
shapes, dtype and subgraphs, rounded as the board's timer reports it: cycles on a
cycle-counter board, microseconds on a `micros` board), so they are
simulated like every virtual-board timing (HELLO's simulated flag). Intermediate tensors
come from the tflite-micro interpreter keeping every tensor (model/tflm_layers.py), run
again on the last record when a dump is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.model import tflite_model
from deploykit.model.tflm_layers import op_code
from deploykit.virtual_board.cost import op_cycles, timing_from_cycles

if TYPE_CHECKING:  # imported lazily at run time (TFLM interpreter, flatbuffers)
    from deploykit.model.tflm_layers import LayerRunner
    from deploykit.virtual_board.perturb import PerturbedModel


class VirtualDiagnostics:
    """The virtual board's answers to OP_TIMING_REQ and TENSOR_DUMP_REQ for one model."""

    def __init__(self, model_path, board, micros_timer: bool):
        self.model = Path(model_path).read_bytes()
        ops = tflite_model.parse(self.model).operators
        self.op_times = tuple((i, op_code(op.op), self._ticks(op, board, micros_timer)) for i, op in enumerate(ops))
        self._runner: LayerRunner | None = None
        self._perturbed: PerturbedModel | None = None

    @staticmethod
    def _ticks(op, board, micros_timer: bool) -> int:
        timing = timing_from_cycles(op_cycles(op, board), board)
        return int(timing.micros if micros_timer else timing.cycles)

    def dump(self, inputs: list[bytes], faults=None):
        """Every operator's outputs for one inference on these input tensors (OpOutput lists),
        with the perturb_op fault's operator computed wrong when `faults` has one."""
        if faults is not None and faults.spec.perturb_op is not None:
            return self.perturbed(faults).run(inputs)
        if self._runner is None:
            from deploykit.model.tflm_layers import LayerRunner
            self._runner = LayerRunner(self.model)
        return self._runner.run(inputs)

    def perturbed(self, faults):
        """The model with the perturb_op fault carried through (virtual_board/perturb.py)."""
        if self._perturbed is None:
            from deploykit.virtual_board.perturb import PerturbedModel
            self._perturbed = PerturbedModel(self.model, faults.spec.perturb_op, faults)
        return self._perturbed
