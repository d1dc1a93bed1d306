"""The `runner` role: phasegate runs the approved tests on this machine (`orch.run_tests`)."""

from __future__ import annotations

from phasegate.agents.base import Job, Submission


class RunnerAgent:
    """Runs the tests of the claimed session; the run records its own transition."""

    # run_tests takes a run lease of its own (a new epoch, TTL = test timeout + 60 s),
    # so heartbeating the claim's older epoch would only report a false loss.
    holds_claim = False
    submits_itself = False

    def work(self, job: Job) -> Submission | None:
        """Run the tests; the session moves on to final review or the fix loop."""
        job.orch.run_tests(job.session.id, job.principal)
        return None
