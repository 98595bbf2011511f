"""Slurm job states: which are final, and how to read them in every API version.

v0.0.38/39 give ``job_state`` as one string, in which a flag can stand in for the base
state (``"COMPLETING"``); v0.0.40+ give a list, base state first, then flags
(``["CANCELLED", "COMPLETING"]``, even ``["COMPLETED", "COMPLETING"]``). A job is
final only when its base state is final *and* no flag says Slurm is still working on
it (completing, configuring, or about to requeue it).
"""
from __future__ import annotations

BASE_STATES = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT",
    "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
})

# Decided on purpose: NODE_FAIL, BOOT_FAIL, DEADLINE and OUT_OF_MEMORY are final
# (sfapi_client's list leaves the first three out); PREEMPTED is final unless a
# REQUEUE* flag says the job will run again. SUSPENDED is not final.
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
})

# Flags under which a job is not finished, whatever its base state says.
# EXPEDITING (v0.0.44+, Slurm 25.11): a failed job held for an expedited requeue
# (``--requeue=expedite``) while its epilogs decide whether it runs again.
UNFINISHED_FLAGS = frozenset({
    "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "SPECIAL_EXIT", "RESIZING", "STAGE_OUT", "SIGNALING", "REVOKED", "EXPEDITING",
})

# Flags that say something about a job without changing whether it is finished.
OTHER_FLAGS = frozenset({
    "LAUNCH_FAILED", "STOPPED", "RECONFIG_FAIL", "POWER_UP_NODE", "RESV_DEL_HOLD",
})


def normalize_state(raw) -> tuple[str, tuple[str, ...]]:
    """``job_state`` of any version -> (base state, flags)."""
    if raw is None:
        return "UNKNOWN", ()
    if isinstance(raw, str):
        names = [p for p in raw.replace(",", " ").split() if p]
    else:
        names = [str(p) for p in raw]
    names = [n.upper() for n in names] or ["UNKNOWN"]
    base = next((n for n in names if n in BASE_STATES), None)
    flags = tuple(n for n in names if n != base)
    if base is None:
        # A lone flag stands in for the state (v0.0.38: "COMPLETING").
        base, flags = names[0], tuple(names[1:])
    return base, flags


def is_terminal(state: str, flags=()) -> bool:
    return state in TERMINAL_STATES and not (set(flags) & UNFINISHED_FLAGS)
