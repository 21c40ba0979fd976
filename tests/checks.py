"""Assertion counting for the end-to-end test scripts: each failed check
prints a FAIL line and the run ends with the "N passed, N failed" line the
CI reads, whatever the script tests."""


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}", flush=True)
        return cond

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0
