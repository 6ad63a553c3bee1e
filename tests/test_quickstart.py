"""The main job end to end: ResNet v1 50 from scratch on digits, evaluated as served.

This is README's first command.  It takes 5-8 minutes on 2 CPU cores, and it is the
test that matters most: a BatchNorm whose moving statistics never update, or a decay
too slow for 300 steps, leaves eval-mode accuracy far below train-mode accuracy.
"""

from slimtune import quickstart


def test_quickstart_reaches_95_percent_as_served(tmp_path, digits_dir):
    result = quickstart.run(quickstart.QuickstartConfig(work_dir=str(tmp_path / "qs")))
    print(f"top-1 is_training=False {result['top1']:.4f}, batch statistics "
          f"{result['top1_batch_statistics']:.4f}, {result['seconds']:.0f} s")
    assert result["top1"] >= 0.95
    assert abs(result["gap"]) <= 0.02
