import torch

from tests.examples import load_example


def load():
    return load_example("srwm_demo")


def test_recall_batches_ask_for_a_shown_key():
    demo = load()
    cfg = demo.Config()
    keys, values, answer = demo.make_batch(cfg, 32, torch.Generator().manual_seed(0))
    assert keys.shape == values.shape == (32, cfg.n_pairs + 1)
    assert (values[:, -1] == cfg.n_values).all()
    for b in range(32):
        shown = keys[b, :-1].tolist().index(keys[b, -1].item())
        assert values[b, shown] == answer[b]


def test_demo_runs_end_to_end_and_prints_a_table(capsys):
    demo = load()
    demo.main(demo.Config(steps=3, batch_size=4, d_model=16, num_heads=2, threads=1))
    out = capsys.readouterr().out
    assert "| srwm |" in out and "test accuracy" in out


def test_demo_writes_plain_progress_lines_not_a_bar_when_not_on_a_terminal(capsys):
    demo = load()
    demo.main(demo.Config(steps=3, batch_size=4, d_model=16, num_heads=2, threads=1))
    captured = capsys.readouterr()  # pytest's capture is not a terminal, as a log file is not
    assert "\r" not in captured.err
    assert "srwm: 3/3 (100%)" in captured.err and "loss=" in captured.err
    assert captured.err.startswith("threads: 1 intra-op")  # the chosen numbers come first
