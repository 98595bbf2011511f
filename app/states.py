"""The job-state vocabulary: every state name and state set the service uses, here once.

Slurm's states and flags, how to read them in every API version, and the states of
our own that a record can hold before or instead of a Slurm state. Schemas, the
poller, the store, tracking, the CLI, the web page and the README all take their
lists from here (``tests/unit/test_states.py`` checks the README and the schemas
against these sets).

v0.0.38/39 give ``job_state`` as one string, in which a flag can stand in for the base
state (``"COMPLETING"``); v0.0.40+ give a list, base state first, then flags
(``["CANCELLED", "COMPLETING"]``, even ``["COMPLETED", "COMPLETING"]``). A job is
final only when its base state is final *and* no flag says Slurm is still working on
it (completing, configuring, or about to requeue it).
"""
from __future__ import annotations

# -- Slurm's states ---------------------------------------------------------------
PENDING = "PENDING"
RUNNING = "RUNNING"
SUSPENDED = "SUSPENDED"
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
TIMEOUT = "TIMEOUT"
NODE_FAIL = "NODE_FAIL"
PREEMPTED = "PREEMPTED"
BOOT_FAIL = "BOOT_FAIL"
DEADLINE = "DEADLINE"
OUT_OF_MEMORY = "OUT_OF_MEMORY"

# Slurm's states that are not final.
SLURM_ACTIVE_STATES = (PENDING, RUNNING, SUSPENDED)

# Slurm's final states.
# Decided on purpose: NODE_FAIL, BOOT_FAIL, DEADLINE and OUT_OF_MEMORY are final
# (sfapi_client's list leaves the first three out); PREEMPTED is final unless a
# REQUEUE* flag says the job will run again. SUSPENDED is not final.
SLURM_FINAL_STATES = (COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, BOOT_FAIL,
                      DEADLINE, OUT_OF_MEMORY)
TERMINAL_STATES = frozenset(SLURM_FINAL_STATES)
# The same, from the mildest end to the worst: a job array ends with the worst of its
# elements' ends (``poll_state.array_state``).
ARRAY_SEVERITY = (COMPLETED, CANCELLED, PREEMPTED, DEADLINE, TIMEOUT, OUT_OF_MEMORY,
                  NODE_FAIL, BOOT_FAIL, FAILED)

BASE_STATES = frozenset(SLURM_ACTIVE_STATES) | TERMINAL_STATES

# -- Slurm's flags ----------------------------------------------------------------
REQUEUED = "REQUEUED"
# Flags under which a job is not finished, whatever its base state says.
# EXPEDITING (v0.0.44+, Slurm 25.11): a failed job held for an expedited requeue
# (``--requeue=expedite``) while its epilogs decide whether it runs again.
UNFINISHED_FLAGS = frozenset({
    "COMPLETING", "CONFIGURING", REQUEUED, "REQUEUE_HOLD", "REQUEUE_FED",
    "SPECIAL_EXIT", "RESIZING", "STAGE_OUT", "SIGNALING", "REVOKED", "EXPEDITING",
})

# Flags that say something about a job without changing whether it is finished.
OTHER_FLAGS = frozenset({
    "LAUNCH_FAILED", "STOPPED", "RECONFIG_FAIL", "POWER_UP_NODE", "RESV_DEL_HOLD",
})

# What ``POST /monitor`` accepts as the state a client last saw (v0.0.38 spells some
# flags in place of the state).
MONITOR_STATES = (
    PENDING, RUNNING, SUSPENDED, "COMPLETING", "CONFIGURING", COMPLETED, FAILED,
    CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE,
    OUT_OF_MEMORY, REQUEUED, "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "REVOKED",
    "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT", "STOPPED",
)

# -- Our own states ---------------------------------------------------------------
SUBMITTING = "SUBMITTING"          # record saved, submit under way
SUBMIT_FAILED = "SUBMIT_FAILED"    # slurmrestd refused the job or could not be reached
SUBMIT_UNKNOWN = "SUBMIT_UNKNOWN"  # submit timed out: the job may or may not exist
LOST = "LOST"                      # slurmctld forgot the job and no accounting said how it ended
UNKNOWN = "UNKNOWN"                # a job_state slurmrestd left out
OWN_STATES = frozenset({SUBMITTING, SUBMIT_FAILED, SUBMIT_UNKNOWN, LOST})

# -- The sets the service works with ----------------------------------------------
# After these nothing more happens to a task: Slurm's final states and ours.
FINAL_STATES = frozenset(TERMINAL_STATES | {SUBMIT_FAILED, LOST})
# States a task is listed under while it is not final (the web page's filter).
ACTIVE_STATES = frozenset(SLURM_ACTIVE_STATES) | {SUBMITTING, SUBMIT_UNKNOWN}
# States from which a job found finished must have run in between (reported RUNNING).
BEFORE_RUNNING = frozenset({PENDING, SUBMITTING, SUBMIT_UNKNOWN, REQUEUED})
# What ``task.notification.on`` may name, in the order error messages list them.
REPORTABLE_STATES = (*SLURM_ACTIVE_STATES, *SLURM_FINAL_STATES, LOST, SUBMIT_FAILED)
# Reported when ``task.notification.on`` is not given (the reference: "upon job
# completion"): Slurm's final states and LOST; a refused submit is answered at once.
DEFAULT_REPORTED_STATES = frozenset(TERMINAL_STATES | {LOST})


def is_final(state: str | None) -> bool:
    """Whether a record in ``state`` is finished (nothing more will happen to it)."""
    return state in FINAL_STATES


def normalize_state(raw) -> tuple[str, tuple[str, ...]]:
    """``job_state`` of any version -> (base state, flags)."""
    if raw is None:
        return UNKNOWN, ()
    if isinstance(raw, str):
        names = [p for p in raw.replace(",", " ").split() if p]
    else:
        names = [str(p) for p in raw]
    names = [n.upper() for n in names] or [UNKNOWN]
    base = next((n for n in names if n in BASE_STATES), None)
    flags = tuple(n for n in names if n != base)
    if base is None:
        # A lone flag stands in for the state (v0.0.38: "COMPLETING").
        base, flags = names[0], tuple(names[1:])
    return base, flags


def is_terminal(state: str, flags=()) -> bool:
    """Whether Slurm is done with a job in ``state`` with ``flags``."""
    return state in TERMINAL_STATES and UNFINISHED_FLAGS.isdisjoint(flags)
