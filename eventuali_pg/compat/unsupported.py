"""Upstream eventuali names that eventuali-pg deliberately does not provide, and why.

Importing one raises :class:`~eventuali_pg.errors.UnsupportedFeatureError` (an ``ImportError``)
whose message says what to use instead, rather than a bare "cannot import name".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UnsupportedFeatureError

_RUST_EXTENSION = (
    "is part of upstream eventuali's compiled (Rust) extension for {area}; eventuali-pg is an "
    "event store and streamer only and does not provide it. {instead}"
)

_AREAS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "security": (
        "event encryption",
        "Encrypt sensitive fields in your event classes before applying them (e.g. with the "
        "'cryptography' package), and use PostgreSQL's own encryption at rest.",
        (
            "EventEncryption",
            "KeyManager",
            "EncryptionKey",
            "EncryptedEventData",
            "EncryptionAlgorithm",
            "SecurityUtils",
        ),
    ),
    "rbac": (
        "role-based access control",
        "Enforce permissions in the application; PostgreSQL roles and GRANTs protect the "
        "events table itself.",
        (
            "RbacManager",
            "RbacUser",
            "Role",
            "Permission",
            "SecurityLevel",
            "Session",
            "AccessDecision",
            "AuditEntry",
        ),
    ),
    "audit": (
        "audit trails and compliance reports",
        "The events table is an append-only audit log already (see 'History is append-only' "
        "in the README); build reports as projections.",
        (
            "AuditManager",
            "AuditTrailEntry",
            "AuditEventType",
            "AuditOutcome",
            "RiskLevel",
            "DataClassification",
            "ComplianceTag",
            "ComplianceReport",
            "IntegrityStatus",
        ),
    ),
    "gdpr": (
        "GDPR compliance",
        "Keep personal data out of events or encrypt it per subject (crypto-shredding).",
        (
            "GdprManager",
            "DataSubject",
            "ConsentRecord",
            "SubjectRightsRequest",
            "BreachNotification",
            "GdprComplianceStatus",
            "GdprComplianceReport",
            "PersonalDataType",
            "LawfulBasisType",
            "ConsentMethod",
            "ConsentStatus",
            "DataSubjectRight",
            "RequestStatus",
            "BreachType",
            "ExportFormat",
        ),
    ),
    "tenancy": (
        "multi-tenancy, quotas and tenant metrics",
        "Give each tenant its own PostgreSQL schema: EventStore.create(dsn, schema='tenant_a') "
        "after eventuali_pg.migrate(dsn, schema='tenant_a').",
        (
            "TenantId",
            "TenantInfo",
            "TenantConfig",
            "TenantMetadata",
            "ResourceLimits",
            "TenantManager",
            "TenantStorageMetrics",
            "QuotaTier",
            "AlertType",
            "QuotaCheckResult",
            "QuotaAlert",
            "BillingAnalytics",
            "EnhancedResourceUsage",
            "ConfigurationEnvironment",
            "ConfigurationValue",
            "TenantConfigurationManager",
            "TenantHealthScore",
            "MetricDataPoint",
            "TenantMetricsCollector",
        ),
    ),
    "health": (
        "health checks",
        "Use `eventuali-pg status` (or its --json output) and store.stats() / "
        "streamer.stats() from code.",
        (
            "HealthStatus",
            "HealthCheckResult",
            "SystemMetrics",
            "HealthReport",
            "HealthConfig",
            "HealthMonitorService",
            "HealthHttpServer",
        ),
    ),
    "observability": (
        "observability and profiling",
        "eventuali-pg logs under the 'eventuali_pg' logger and exposes figures through "
        "store.stats(), streamer.stats() and ProjectionRunner.stats(); set correlation_id and "
        "causation_id on events yourself.",
        (
            "ObservabilityConfig",
            "ObservabilityService",
            "CorrelationId",
            "TraceContext",
            "LogLevel",
            "PerformanceMetrics",
            "OperationTimer",
            "generate_correlation_id",
            "ProfileType",
            "ProfilingConfig",
            "MemoryInfo",
            "IoInfo",
            "ProfileEntry",
            "RegressionSeverity",
            "PerformanceSnapshot",
            "RegressionDetection",
            "FlameGraphNode",
            "FlameGraph",
            "BottleneckType",
            "Bottleneck",
            "OptimizationSuggestion",
            "BottleneckAnalysis",
        ),
    ),
    "snapshot": (
        "upstream's snapshot service",
        "Snapshots are a class setting here: class User(Aggregate, snapshot_every=50) (and "
        "snapshot_version=...); store.load() then starts from the latest usable snapshot.",
        (
            "SnapshotService",
            "SnapshotConfig",
            "AggregateSnapshot",
            "create_json_snapshot",
            "load_json_snapshot_state",
        ),
    ),
    "performance": (
        "SQLite/connection tuning (eventuali.performance)",
        "EventStore.create takes pool_min_size, pool_max_size, max_batch_events and "
        "max_batch_wait; PostgreSQL has no WAL/journal modes to set from the client.",
        (
            "PoolConfig",
            "PoolStats",
            "ConnectionPool",
            "benchmark_connection_pool",
            "compare_pool_configurations",
            "WalSynchronousMode",
            "WalJournalMode",
            "TempStoreMode",
            "AutoVacuumMode",
            "WalConfig",
            "WalStats",
            "benchmark_wal_configurations",
            "ReadPreference",
            "ReplicaConfig",
            "ReadReplicaManager",
            "CacheConfig",
            "CacheManager",
            "EvictionPolicy",
            "CompressionAlgorithm",
            "CompressionConfig",
            "CompressionManager",
        ),
    ),
}

#: Unsupported upstream name -> the area it belongs to (a key of the table above).
UNSUPPORTED_NAMES: dict[str, str] = {
    name: area for area, (_, _, names) in _AREAS.items() for name in names
}

#: Areas whose names upstream exports from the top-level package (the others live only in
#: ``eventuali.snapshot`` and ``eventuali.performance``; upstream's top level has the
#: snapshot classes too).
TOP_LEVEL_AREAS = frozenset(
    {"security", "rbac", "audit", "gdpr", "tenancy", "health", "observability", "snapshot"}
)


def unsupported(name: str, module: str) -> UnsupportedFeatureError:
    """The error for importing upstream's ``name`` from ``module`` under eventuali-pg."""
    area, instead, _ = _AREAS[UNSUPPORTED_NAMES[name]]
    return UnsupportedFeatureError(
        f"{module}.{name} "
        + _RUST_EXTENSION.format(area=area, instead=instead)
        + " See 'Coming from eventuali' in the eventuali-pg README."
    )


def module_getattr(module: str, areas: frozenset[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` raising :func:`unsupported` for the names of ``areas``."""

    def __getattr__(name: str) -> Any:
        if UNSUPPORTED_NAMES.get(name) in areas:
            raise unsupported(name, module)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
