"""The 32-bit arena projection: per category, never below real builds' figures."""

from __future__ import annotations

import copy

from deploykit.model import arena, tflite_model

# Smallest arena AllocateTensors accepted in real 32-bit TFLM builds (Cortex-M4 reference,
# Cortex-M4 CMSIS-NN, ESP-NN kernels on a 32-bit ABI) for the sine model as converted: a
# projection that a firmware sizes its arena with must never be below these.
SINE_REAL = {"cortex-m-reference": 1068, "cortex-m-cmsis-nn": 1156, "esp32-esp-nn": 1100}


def _parsed(m):
    return tflite_model.parse(m.model_bytes())


def test_every_target_class_is_projected(converted_examples):
    for m in converted_examples.values():
        p = m["arena"]["projections"]
        assert set(p) == set(arena.TARGET_CLASSES) and all(v % 16 == 0 for v in p.values())


def test_sine_projection_covers_real_builds_without_wasting_ram(sine_manifest):
    p = sine_manifest["arena"]["projections"]
    for cls, real in SINE_REAL.items():
        assert real <= p[cls] <= 1.6 * real, (cls, p[cls], real)


def test_32_bit_projection_is_below_the_x86_64_host_minimum(converted_examples):
    """Pointers and TfLiteTensor shrink on 32-bit, so reference kernels need less than the host."""
    for m in converted_examples.values():
        a = m["arena"]
        assert a["projections"]["cortex-m-reference"] < a["host_min"]


def test_cmsis_nn_head_is_replanned_with_its_scratch_buffers(converted_examples):
    """gestures' CONV_2D asks CMSIS-NN for an im2col buffer (2 columns of int16); TFLM
    plans it beside the live activations, so the head grows by what does not fit."""
    from deploykit.model import arena_plan
    g = converted_examples["gestures"]
    parsed = _parsed(g)
    (k, conv), = [(i, o) for i, o in enumerate(parsed.operators) if o.op == "CONV_2D"]
    w = parsed.tensors[conv.inputs[1]].shape
    cols = -(-w[1] * w[2] * w[3] // 4) * 4
    assert arena_plan.cmsis_nn_requests(parsed) == [(k, 2 * cols * 2)]
    target = arena.TARGETS["cortex-m-cmsis-nn"]
    assert arena._head(g["arena"], target, parsed) == arena_plan.head(parsed, [(k, 2 * cols * 2)]) > g["arena"]["head"]
    assert arena_plan.cmsis_nn_requests(_parsed(converted_examples["sine"])) == []


def test_optimized_kernels_cost_more_persistent_data(converted_examples):
    for m in converted_examples.values():
        p = arena.project(m["arena"], _parsed(m))
        assert p["cortex-m-cmsis-nn"] > p["cortex-m-reference"]


def test_unknown_ops_are_projected_conservatively(sine_manifest):
    measured = sine_manifest["arena"]
    without = arena.project(measured)["cortex-m-reference"]
    assert without >= arena.project(measured, _parsed(sine_manifest))["cortex-m-reference"]


def test_more_tensors_project_more(sine_manifest):
    measured = copy.deepcopy(sine_manifest["arena"])
    base = arena.project_one(measured, arena.TARGETS["cortex-m-reference"])
    measured["categories"]["TfLiteEvalTensor data"]["count"] += 10
    assert arena.project_one(measured, arena.TARGETS["cortex-m-reference"]) >= base + 10 * 12 - arena.ALIGN


def test_one_margin_rule_for_render_virtual_board_and_report():
    """+10 % rounded up to 16, in exact integers, is what all three stages use. The report
    once computed it in floats and recommended 16 B more than render configured for 54 of
    the sizes 1..20000 (used 1600 B: 1776 against 1760)."""
    from types import SimpleNamespace

    from deploykit.firmware.render import arena_size
    from deploykit.model.arena import with_margin
    from deploykit.report.stats import recommended_arena
    from deploykit.virtual_board.firmware import arena_figures

    class FakeManifest(dict):
        def arena_projection(self, arena_class, board_id, hint=""):
            return self["used"]

    board = SimpleNamespace(arena_class="cortex-m-reference", id="b", adapter="arduino")
    assert with_margin(1600) == recommended_arena(1600) == 1760
    for used in range(1, 1250 * 16 + 1):
        want = -(-used * 110 // 1600) * 16  # integer ceil(used * 1.1 / 16) * 16
        m = FakeManifest(used=used, arena={})
        assert with_margin(used) == want
        assert recommended_arena(used) == want, used
        assert arena_size(m, board, None, 10.0)[0] == want, used
        assert arena_figures(m, board)[0] == want, used
