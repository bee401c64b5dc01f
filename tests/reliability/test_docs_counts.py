"""docs/reliability.md reports the counts this suite checks; keep the two in step."""

from __future__ import annotations

import re
from pathlib import Path

from tests.reliability import (
    test_bad_inputs_data as data,
)
from tests.reliability import (
    test_bad_inputs_layers as layers,
)
from tests.reliability import (
    test_bad_inputs_models as models,
)
from tests.reliability import (
    test_bad_inputs_ops as ops,
)
from tests.reliability import (
    test_bad_inputs_rl as rl,
)
from tests.reliability import (
    test_bad_inputs_utils_memory as utils_memory,
)
from tests.reliability import (
    test_bad_inputs_weights as weights,
)
from tests.reliability import (
    test_file_integrity as files,
)
from tests.reliability import (
    test_nan_isolation as nan,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def table_count(name: str) -> int:
    m = re.search(rf"^\| {re.escape(name)} \| (\d+)", DOC.read_text(), re.M)
    assert m, f"docs/reliability.md has no row for {name!r}"
    return int(m.group(1))


def test_the_bad_input_table_counts_the_probes(tmp_path):
    for sub in ("d", "f", "u"):
        (tmp_path / sub).mkdir()
    counts = {
        "ops": len(ops.PROBES),
        "layers": len(layers.PROBES),
        "models (LM)": len(models.lm_probes()),
        "models (few-shot)": len(models.fewshot_probes()),
        "weights": len(
            weights.spec_probes()
            + weights.rnn_probes()
            + weights.symmetry_probes()
            + weights.encoder_probes()
            + weights.emulation_probes()
        ),
        "weights.zoo": len(weights.zoo_probes(tmp_path)),
        "rl": len(rl.vtrace_probes() + rl.config_probes() + rl.env_probes() + rl.agent_probes() + rl.learner_probes())
        + 1,  # + the missing checkpoint path
        "data (text)": len(data.text_probes(tmp_path / "d")),
        "data (files)": len(data.file_probes(tmp_path / "f")),
        "data (few-shot episodes)": len(data.episode_probes()),
        "utils": len(utils_memory.utils_probes(tmp_path / "u")),
        "memory": len(utils_memory.memory_probes()),
        "memory (xfail, other branches)": len(utils_memory.ELSEWHERE),
    }
    assert {k: table_count(k) for k in counts} == counts


def test_the_isolation_and_fault_injection_counts():
    text = DOC.read_text()
    assert f"| {nan.N_RANDOM * 3} ({nan.N_RANDOM} seeds x 3 forms) |" in text
    assert f"all detected | {2 * files.FLIPS} |" in text  # checkpoint and memory
    assert f"random) | {2 * files.CUTS} |" in text
    assert f"`meta.json`: all detected | {4 * (files.FLIPS // 4)} |" in text
