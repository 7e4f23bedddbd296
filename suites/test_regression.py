"""Model-release CI: no introspection metric fell and no control's false positives rose.

Compared with `--baseline reports/<prev>/summary.json`: two-sided, Holm over metrics; one test
per baseline metric. Skipped without --baseline.
"""


def test_no_regression(regression, baseline_metric):
    regression(baseline_metric)
