"""The evidence shaped for reading: a diff cut per file, failures grouped, a row per test."""

from __future__ import annotations

from phasegate.entrypoints.web.evidence import failure_groups, result_rows, split_diff

DIFF = """\
diff --git a/calc.py b/calc.py
index 1111111..2222222 100644
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    raise NotImplementedError
+    return a + b
diff --git a/tests/test_new.py b/tests/test_new.py
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/tests/test_new.py
@@ -0,0 +1,3 @@
+--- not a header: a removed-looking line inside a hunk
+def test_new():
+    assert True
"""


def failure(test_id: str, message: str, last: str, outcome: str = "failed") -> dict[str, str]:
    return {"id": test_id, "outcome": outcome, "message": message, "traceback": f"...\n{last}\n"}


def test_a_diff_is_cut_into_files_with_their_counts() -> None:
    """Each file gets its status and its added and removed lines; headers are left out."""
    calc, new = split_diff(DIFF)
    assert (calc.path, calc.status, calc.added, calc.removed) == ("calc.py", "modified", 1, 1)
    assert (new.path, new.status, new.added, new.removed) == ("tests/test_new.py", "added", 3, 0)
    assert not any(line.startswith(("index ", "+++ ", "new file")) for line in new.lines)
    assert new.anchor == "file-tests-test_new-py"
    assert 'class="hl"' in new.html and "test_new" in new.html


def test_identical_failures_are_one_group_with_their_count() -> None:
    """Sixteen NotImplementedErrors at one line are one group; another reason is its own."""
    same = [
        failure(f"t.py::test_{i}", "NotImplementedError", "m.py:3: NotImplementedError")
        for i in range(16)
    ]
    other = failure("t.py::test_x", "assert 1 == 2", "t.py:9: AssertionError")
    groups = failure_groups([other, *same])
    assert [len(g.tests) for g in groups] == [16, 1]
    assert groups[0].where == "m.py:3: NotImplementedError" and groups[0].tests[0] == "t.py::test_0"
    assert groups[1].reason == "assert 1 == 2"


def test_every_collected_test_gets_a_row_failures_first() -> None:
    """Tests that did not fail are rows too; failed ones come first with their reason."""
    evidence = {
        "collected": ["t.py::test_a", "t.py::test_b"],
        "failures": [failure("t.py::test_b", "boom", "t.py:2: ValueError", "error")],
        "counts": {"total": 2, "passed": 1, "errors": 1, "skipped": 0},
    }
    rows = result_rows(evidence)
    assert [(r.id, r.outcome, r.reason) for r in rows] == [
        ("t.py::test_b", "error", "boom"),
        ("t.py::test_a", "passed", ""),
    ]
