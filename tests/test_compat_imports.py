"""Issue 15, item 1: every public name of upstream eventuali imports from the same path in
eventuali_pg, either as the eventuali-pg counterpart or as a typed "not provided" error.

The name lists below are upstream's public API (its package ``__init__`` and the submodules its
examples and docs import), written out by hand.
"""

from __future__ import annotations

import importlib

import pytest

import eventuali_pg
from eventuali_pg.compat.unsupported import UNSUPPORTED_NAMES
from eventuali_pg.errors import UnsupportedFeatureError

UPSTREAM_TOP_LEVEL = [
    "EventStore", "Event", "Aggregate", "EventStreamer", "EventStreamReceiver", "StreamEvent",
    "Subscription", "SubscriptionBuilder", "Projection", "SagaHandler", "SnapshotService",
    "SnapshotConfig", "AggregateSnapshot", "EventEncryption", "KeyManager", "EncryptionKey",
    "EncryptedEventData", "EncryptionAlgorithm", "SecurityUtils", "RbacManager", "RbacUser",
    "Role", "Permission", "SecurityLevel", "Session", "AccessDecision", "AuditEntry",
    "AuditManager", "AuditTrailEntry", "AuditEventType", "AuditOutcome", "RiskLevel",
    "DataClassification", "ComplianceTag", "ComplianceReport", "IntegrityStatus", "GdprManager",
    "DataSubject", "ConsentRecord", "SubjectRightsRequest", "BreachNotification",
    "GdprComplianceStatus", "GdprComplianceReport", "PersonalDataType", "LawfulBasisType",
    "ConsentMethod", "ConsentStatus", "DataSubjectRight", "RequestStatus", "BreachType",
    "ExportFormat", "TenantId", "TenantInfo", "TenantConfig", "TenantMetadata",
    "ResourceLimits", "TenantManager", "TenantStorageMetrics", "QuotaTier", "AlertType",
    "QuotaCheckResult", "QuotaAlert", "BillingAnalytics", "EnhancedResourceUsage",
    "ConfigurationEnvironment", "ConfigurationValue", "TenantConfigurationManager",
    "TenantHealthScore", "MetricDataPoint", "TenantMetricsCollector", "HealthStatus",
    "HealthCheckResult", "SystemMetrics", "HealthReport", "HealthConfig",
    "HealthMonitorService", "HealthHttpServer", "ObservabilityConfig", "ObservabilityService",
    "CorrelationId", "TraceContext", "LogLevel", "PerformanceMetrics", "OperationTimer",
    "generate_correlation_id", "ProfileType", "ProfilingConfig", "MemoryInfo", "IoInfo",
    "ProfileEntry", "RegressionSeverity", "PerformanceSnapshot", "RegressionDetection",
    "FlameGraphNode", "FlameGraph", "BottleneckType", "Bottleneck", "OptimizationSuggestion",
    "BottleneckAnalysis", "EventualiError", "OptimisticConcurrencyError", "EventStoreError",
    "SerializationError", "AggregateNotFoundError", "InvalidEventError", "DatabaseError",
    "ConfigurationError", "ProjectionError", "SnapshotError", "StreamingError",
]  # fmt: skip

UPSTREAM_SUBMODULES = {
    "event": ["Event", "DomainEvent", "SystemEvent", "UserRegistered", "UserEmailChanged",
              "UserDeactivated"],
    "aggregate": ["Aggregate", "User", "Event"],
    "event_store": ["EventStore", "Event", "Aggregate"],
    "exceptions": ["EventualiError", "OptimisticConcurrencyError", "EventStoreError",
                   "SerializationError", "AggregateNotFoundError", "InvalidEventError",
                   "DatabaseError", "ConfigurationError", "ProjectionError", "SnapshotError",
                   "StreamingError"],
    "streaming": ["EventStreamer", "EventStreamReceiver", "StreamEvent", "Subscription",
                  "SubscriptionBuilder", "Projection", "SagaHandler"],
    "snapshot": ["SnapshotConfig", "AggregateSnapshot", "SnapshotService",
                 "create_json_snapshot", "load_json_snapshot_state"],
    "performance": ["PoolConfig", "PoolStats", "ConnectionPool", "benchmark_connection_pool",
                    "compare_pool_configurations", "WalSynchronousMode", "WalJournalMode",
                    "TempStoreMode", "AutoVacuumMode", "WalConfig", "WalStats",
                    "benchmark_wal_configurations", "ReadPreference", "ReplicaConfig",
                    "ReadReplicaManager", "CacheConfig", "CacheManager", "EvictionPolicy",
                    "CompressionAlgorithm", "CompressionConfig", "CompressionManager"],
}  # fmt: skip

CASES = [("eventuali_pg", name) for name in UPSTREAM_TOP_LEVEL] + [
    (f"eventuali_pg.{module}", name)
    for module, names in UPSTREAM_SUBMODULES.items()
    for name in names
]


@pytest.mark.parametrize(("module", "name"), CASES, ids=lambda v: v)
def test_every_upstream_name_imports_from_the_same_path(module: str, name: str) -> None:
    """``from eventuali_pg[.x] import Name`` gives the counterpart, or, for the features
    eventuali-pg does not provide, an ImportError that says so and what to do instead."""
    if name in UNSUPPORTED_NAMES:
        with pytest.raises(UnsupportedFeatureError, match="Coming from eventuali") as info:
            exec(f"from {module} import {name}", {})
        assert isinstance(info.value, ImportError)
        assert name in str(info.value)
        return
    namespace: dict[str, object] = {}
    exec(f"from {module} import {name}", namespace)
    assert namespace[name] is not None
    assert name in importlib.import_module(module).__all__


def test_supported_names_are_the_same_objects_everywhere() -> None:
    from eventuali_pg import aggregate, event, event_store, exceptions, streaming

    assert event.Event is aggregate.Event is event_store.Event is eventuali_pg.Event
    assert aggregate.Aggregate is eventuali_pg.Aggregate
    assert event_store.EventStore is eventuali_pg.EventStore
    assert streaming.Subscription is eventuali_pg.Subscription
    assert streaming.Projection is eventuali_pg.Projection
    assert streaming.SagaHandler is eventuali_pg.SagaHandler
    assert exceptions.OptimisticConcurrencyError is eventuali_pg.ConcurrencyError
    assert exceptions.EventualiError is eventuali_pg.EventualiError


def test_unsupported_names_are_only_upstream_names() -> None:
    listed = set(UPSTREAM_TOP_LEVEL).union(*UPSTREAM_SUBMODULES.values())
    assert set(UNSUPPORTED_NAMES) <= listed


def test_unknown_names_are_still_plain_attribute_errors() -> None:
    assert not hasattr(eventuali_pg, "NoSuchThing")
    with pytest.raises(ImportError, match="cannot import name"):
        exec("from eventuali_pg import NoSuchThing", {})
    with pytest.raises(AttributeError):
        _ = importlib.import_module("eventuali_pg.event").NoSuchThing
