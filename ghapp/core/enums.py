"""The contract's enumerations, and the leniency a client asks for: a newer server may send
values this version does not know."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

# Callbacks besides the verdict's that a request may ask for (`notify`).
NotifyEvent = Literal["deployment.started", "deployment.waiting"]

# Validation context a client passes (ghapp.client): a newer server may send enum values this
# version does not know; they are kept as plain strings instead of failing the whole answer.
LENIENT = {"lenient_enums": True}


def lenient_enum(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    """Validate an enum value; under the LENIENT context an unknown string stays a string."""
    try:
        return handler(value)
    except ValidationError:
        if (
            isinstance(value, str)
            and isinstance(info.context, dict)
            and info.context.get("lenient_enums")
        ):
            return value
        raise


# The enums of the resource, lenient under the LENIENT context.
TOLERANT = WrapValidator(lenient_enum)

DeploymentState = Annotated[Literal["dispatched", "in_progress", "completed"], TOLERANT]
VerdictStatus = Annotated[Literal["success", "failure"], TOLERANT]
ReasonValue = Literal[
    "failure",
    "cancelled",
    "timed_out",
    "startup_failure",
    "action_required",
    "stale",
    "neutral",
    "skipped",
    "dispatch_rejected",
    "run_not_found",
    "superseded",
    "policy_rejected",
    "review_rejected",
]
Reason = Annotated[ReasonValue, TOLERANT]
DeploymentKind = Annotated[Literal["deploy", "rollback"], TOLERANT]
OnFailure = Literal["report", "rollback"]
Concurrency = Literal["queue", "cancel_previous", "reject"]
CallbackState = Annotated[Literal["pending", "delivered", "failed"], TOLERANT]
CauseCategory = Literal[
    "code", "configuration", "infrastructure", "transient", "cancelled", "unknown", "policy"
]
