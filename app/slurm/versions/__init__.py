"""One adapter per slurmrestd API version; ``ADAPTERS`` maps version -> adapter."""
from .base import (Adapter, DiagInfo, JobInfo, JobsSince, NodeInfo, PartitionInfo,
                   PingInfo)
from .v0_0_38 import AdapterV0_0_38
from .v0_0_39 import AdapterV0_0_39
from .v0_0_40 import AdapterV0_0_40
from .v0_0_41 import AdapterV0_0_41
from .v0_0_42 import AdapterV0_0_42
from .v0_0_43 import AdapterV0_0_43
from .v0_0_44 import AdapterV0_0_44
from .v0_0_45 import AdapterV0_0_45

ADAPTERS: dict[str, type[Adapter]] = {
    cls.version: cls for cls in (
        AdapterV0_0_38, AdapterV0_0_39, AdapterV0_0_40,
        AdapterV0_0_41, AdapterV0_0_42, AdapterV0_0_43,
        AdapterV0_0_44, AdapterV0_0_45,
    )
}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


__all__ = ["ADAPTERS", "Adapter", "DiagInfo", "JobInfo", "JobsSince", "NodeInfo",
           "PartitionInfo", "PingInfo", "version_key"]
