"""An embedded GitHub simulator for ghapp's tests and ``ghapp demo``.

    sim = Simulator(app_id=1234, webhook_secret="s3cret", webhook_url=url)
    await sim.start()                      # sim.api_url, sim.log_url
    repo = sim.add_repository("acme/shop")
    repo.add_workflow(Workflow(file="deploy.yml", name="Deploy", jobs=[Job("deploy", steps=[
        Step("Run actions/checkout@v4"), Step("Deploy", command="./deploy.sh", fail=True)])]))
    ...                                    # the App dispatches over HTTP; runs play out
    await sim.wait_for_run(run_id)         # or sim.auto = False and sim.advance / sim.finish
    await sim.stop()

Faults are switched on ``sim.faults``; what happened is in ``sim.requests``,
``sim.deliveries``, ``sim.runs`` and ``sim.log_auth_violations``.
"""

from ghapp.simulator.http import RequestRecord
from ghapp.simulator.model import Annotation, Faults, Job, Step, Workflow
from ghapp.simulator.simulator import Simulator
from ghapp.simulator.state import JobState, Repository, RunState, StepState
from ghapp.simulator.webhooks import Delivery

__all__ = [
    "Annotation",
    "Delivery",
    "Faults",
    "Job",
    "JobState",
    "Repository",
    "RequestRecord",
    "RunState",
    "Simulator",
    "Step",
    "StepState",
    "Workflow",
]
